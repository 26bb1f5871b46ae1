function write_bytes(path, bytes)
%WRITE_BYTES Write bytes (uint8 or char) to a new file.
fid = fopen(path, 'w');
if fid < 0
    error('scistack:io', 'cannot open %s for writing', path);
end
closer = onCleanup(@() fclose(fid));
n = fwrite(fid, uint8(bytes), 'uint8');
if n ~= numel(bytes)
    error('scistack:io', 'short write to %s (%d of %d bytes): is the disk full?', ...
        path, n, numel(bytes));
end
end
