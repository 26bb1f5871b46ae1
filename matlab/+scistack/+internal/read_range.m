function bytes = read_range(path, offset, len)
%READ_RANGE The LEN bytes (uint8 column) at byte OFFSET (0-based) of a file: one record of
%   a pack. A short read means the pack is damaged (scistack:corruptObject).
fid = fopen(path, 'r');
if fid < 0
    error('scistack:io', 'cannot open %s for reading', path);
end
closer = onCleanup(@() fclose(fid));
if fseek(fid, offset, 'bof') ~= 0
    error('scistack:corruptObject', 'cannot seek to byte %d of %s', offset, path);
end
bytes = fread(fid, len, '*uint8');
if numel(bytes) ~= len
    error('scistack:corruptObject', ['%s is truncated: %d bytes at offset %d were ', ...
        'expected, %d were read. Run `scistack fsck`'], path, len, offset, numel(bytes));
end
end
