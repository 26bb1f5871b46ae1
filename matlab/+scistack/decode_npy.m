function [x, info] = decode_npy(bytes)
%DECODE_NPY The MATLAB array in an npy payload (uint8 vector).
%   [X, INFO] = scistack.decode_npy(BYTES) parses an NPY file (version 1.0, and 2.0/3.0 from
%   foreign writers) and returns the array with numpy's element order: X(i,j,k) equals the
%   numpy element [i-1, j-1, k-1]. INFO has fields descr, shape (numpy's) and unit (for
%   datetime64/timedelta64, e.g. 'ns'; '' otherwise).
%
%   Shapes: () -> 1x1 scalar; (n,) -> n x 1 column; (r, c, ...) -> r x c x ... (MATLAB drops
%   trailing singleton dimensions, so (2, 3, 1) is 2x3).
%   Types: <f8 double, <f4 single, <f2 single (exact widening), <i1..<i8 int8..int64,
%   |u1..<u8 uint8..uint64, |b1 logical, <c8/<c16 complex single/double, <M8[u]/<m8[u]
%   int64 counts of the unit in INFO.unit (NaT is intmin('int64')), <U<n> and |S<n>: a 0-d
%   array is a char row, any other shape a cell array of char rows (trailing NULs removed).
bytes = uint8(bytes(:));
magic = uint8([147, 78, 85, 77, 80, 89]);
if numel(bytes) < 10 || ~isequal(bytes(1:6)', magic)
    error('scistack:corruptObject', 'not an npy payload (bad magic)');
end
major = double(bytes(7));
if major == 1
    hlen = double(bytes(9)) + 256 * double(bytes(10));
    start = 11;
elseif major == 2 || major == 3
    hlen = sum(double(bytes(9:12))' .* [1, 256, 65536, 16777216]);
    start = 13;
else
    error('scistack:corruptObject', 'unsupported npy version %d', major);
end
if numel(bytes) < start - 1 + hlen
    error('scistack:corruptObject', 'npy header is truncated');
end
header = char(bytes(start:start + hlen - 1)');
descr = regexp(header, '''descr''\s*:\s*''([^'']*)''', 'tokens', 'once');
fortran = regexp(header, '''fortran_order''\s*:\s*(True|False)', 'tokens', 'once');
shape = regexp(header, '''shape''\s*:\s*\(([^)]*)\)', 'tokens', 'once');
if isempty(descr) || isempty(fortran) || isempty(shape)
    error('scistack:corruptObject', 'cannot parse npy header %s', strtrim(header));
end
descr = descr{1};
fortran = strcmp(fortran{1}, 'True');
dims = regexp(shape{1}, '\d+', 'match');
shape = zeros(1, numel(dims));
for k = 1:numel(dims)
    shape(k) = str2double(dims{k});
end
count = prod(shape);

parts = regexp(descr, '^([<>|=]?)([a-zA-Z])(\d+)(?:\[(\w+)\])?$', 'tokens', 'once');
if isempty(parts)
    error('scistack:unsupportedDtype', 'npy dtype %s is not supported', descr);
end
order = parts{1};
kind = parts{2};
itemsize = str2double(parts{3});
unit = '';
if numel(parts) >= 4
    unit = parts{4};
end
if kind == 'U'
    itembytes = 4 * itemsize;
else
    itembytes = itemsize;
end
data = bytes(start + hlen:end);
if numel(data) ~= count * itembytes
    error('scistack:corruptObject', 'npy payload holds %d data bytes, its header says %d', ...
        numel(data), count * itembytes);
end
swap = order == '>' && itembytes > 1 && kind ~= 'U' && kind ~= 'S';
info = struct('descr', descr, 'shape', shape, 'unit', unit);

switch kind
    case 'f'
        switch itemsize
            case 8
                flat = typecast(data, 'double');
            case 4
                flat = typecast(data, 'single');
            case 2
                h = typecast(data, 'uint16');
                if swap
                    h = swapbytes(h);
                    swap = false;
                end
                flat = half_to_single(h);
            otherwise
                unsupported(descr);
        end
    case {'i', 'u'}
        if ~any(itemsize == [1, 2, 4, 8])
            unsupported(descr);
        end
        cls = sprintf('int%d', 8 * itemsize);
        if kind == 'u'
            cls = ['u', cls];
        end
        flat = typecast(data, cls);
    case 'b'
        flat = data ~= 0;
    case 'c'
        if itemsize == 16
            pair = typecast(data, 'double');
        elseif itemsize == 8
            pair = typecast(data, 'single');
        else
            unsupported(descr);
        end
        if swap
            pair = swapbytes(pair);
            swap = false;
        end
        re = scistack.internal.npy_arrange(pair(1:2:end), shape, fortran);
        im = scistack.internal.npy_arrange(pair(2:2:end), shape, fortran);
        x = complex(re, im);
        return
    case {'M', 'm'}
        flat = typecast(data, 'int64');
    case 'U'
        units = typecast(data, 'uint32');
        if order == '>'
            units = swapbytes(units);
        end
        flat = strings_of(reshape(double(units), itemsize, count));
    case 'S'
        flat = strings_of(reshape(double(data), itemsize, count));
    otherwise
        unsupported(descr);
end
if swap
    flat = swapbytes(flat);
end
if (kind == 'U' || kind == 'S') && isempty(shape)
    x = flat{1};
    return
end
x = scistack.internal.npy_arrange(flat(:), shape, fortran);
end

function c = strings_of(codes)
% One char row per column of CODES (code points or bytes), trailing NULs removed.
n = size(codes, 2);
c = cell(n, 1);
for k = 1:n
    col = codes(:, k)';
    last = find(col ~= 0, 1, 'last');
    if isempty(last)
        c{k} = '';
    else
        c{k} = scistack.internal.cp_to_char(col(1:last));
    end
end
end

function y = half_to_single(h)
% IEEE half -> single, bit-exact (NaN payloads and -0 kept).
h = double(h);
s = floor(h / 32768) * 2^31;
e = mod(floor(h / 1024), 32);
m = mod(h, 1024);
bits = s + (e + 112) * 2^23 + m * 2^13;
special = e == 31;
bits(special) = s(special) + 255 * 2^23 + m(special) * 2^13;
sub = e == 0;
bits(sub) = s(sub) + double(typecast(single(m(sub) * 2^-24), 'uint32'));
y = typecast(uint32(bits), 'single');
end

function unsupported(descr)
error('scistack:unsupportedDtype', 'npy dtype %s is not supported', descr);
end
