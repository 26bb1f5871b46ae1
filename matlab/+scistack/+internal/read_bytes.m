function bytes = read_bytes(path, offset)
%READ_BYTES The bytes (uint8 column) of a file, from byte OFFSET (0-based, default 0).
if nargin < 2
    offset = 0;
end
fid = fopen(path, 'r');
if fid < 0
    error('scistack:io', 'cannot open %s for reading', path);
end
closer = onCleanup(@() fclose(fid));
if offset > 0
    fseek(fid, offset, 'bof');
end
bytes = fread(fid, Inf, '*uint8');
end
