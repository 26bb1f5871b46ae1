function [x, info, done] = read_npy_file(path, oid)
%READ_NPY_FILE The fast path for a large array: a loose, uncompressed npy object with a
%   plain numeric dtype (f4/f8, signed/unsigned 1-8 byte integers, little-endian) is read
%   with one fread of its elements straight into an array of their class, with no copy of
%   the payload bytes (about fread speed; the general path copies the payload three times).
%   DONE is false, and nothing is returned, for anything else (a missing file, a zstd frame,
%   another kind or dtype, a length that does not add up): read_object then takes the
%   general path, which also reports the errors.
x = [];
info = [];
done = false;
fid = fopen(path, 'r');
if fid < 0
    return
end
closer = onCleanup(@() fclose(fid));
head = fread(fid, 512, '*uint8')';
z = find(head(1:min(numel(head), 64)) == 0, 1);
if isempty(z) || ~strncmp(char(head(1:z - 1)), 'npy ', 4)
    return
end
len = str2double(char(head(5:z - 1)));
npy = head(z + 1:end);
if numel(npy) < 10 || ~isequal(npy(1:8), uint8([147, 78, 85, 77, 80, 89, 1, 0]))
    return
end
hlen = double(npy(9)) + 256 * double(npy(10));
if numel(npy) < 10 + hlen
    return
end
header = char(npy(11:10 + hlen));
tokens = regexp(header, ['^\{''descr'': ''([<|][fiu][1248])'', ''fortran_order'': ', ...
    '(False|True), ''shape'': \(([0-9, ]*)\), \}'], 'tokens', 'once');
if isempty(tokens)
    return
end
descr = tokens{1};
classes = struct('f4', 'single', 'f8', 'double', 'i1', 'int8', 'i2', 'int16', ...
    'i4', 'int32', 'i8', 'int64', 'u1', 'uint8', 'u2', 'uint16', 'u4', 'uint32', ...
    'u8', 'uint64');
key = descr(2:3);
if ~isfield(classes, key) || (descr(1) == '|' && descr(3) ~= '1')
    return
end
dims = regexp(tokens{3}, '\d+', 'match');
shape = zeros(1, numel(dims));
for k = 1:numel(dims)
    shape(k) = str2double(dims{k});
end
count = prod(shape);
itemsize = str2double(descr(3));
fseek(fid, 0, 'eof');
if len ~= 10 + hlen + count * itemsize || ftell(fid) ~= z + len
    return
end
fseek(fid, z + 10 + hlen, 'bof');
cls = classes.(key);
flat = fread(fid, count, ['*', cls], 0, 'ieee-le');
if numel(flat) ~= count
    return
end
x = scistack.internal.npy_arrange(flat, shape, strcmp(tokens{2}, 'True'));
info = struct('kind', 'npy', 'oid', oid, 'size', len, 'descr', descr, 'shape', shape, ...
    'unit', '');
done = true;
end
