function bytes = encode_npy(x)
%ENCODE_NPY The canonical npy payload (uint8 row) of a MATLAB array, byte-identical to
%   Python scistack's (docs/format.md section 1.1: NPY 1.0, fixed header spelling, padded
%   to 64 bytes, C order, little-endian).
%
%   Shape rule (the inverse of scistack.decode_npy, so Python -> MATLAB -> Python keeps
%   the shape):
%     1x1 numeric/logical   -> ()      (a 0-d array)
%     n x 1 column (n ~= 1) -> (n,)    (also 0x1 -> (0,))
%     anything else         -> size(x) as is: 1 x n -> (1, n), r x c -> (r, c),
%                              0x0 -> (0, 0), a x b x c -> (a, b, c)
%   Types: double <f8, single <f4, int8 |i1, uint8 |u1, int16..int64 <i2..<i8,
%   uint16..uint64 <u2..<u8, logical |b1, complex double <c16, complex single <c8.
%   Text: a char row is a 0-d <U<n> array ('' -> <U1); a cell array of char rows is a <U<n>
%   array with the same shape rule (but a 1x1 cell -> (1,)), n = the longest text
%   (at least 1), in Unicode code points.
if iscell(x)
    [descr, shape, data] = text_array(x);
elseif ischar(x)
    if ~(isempty(x) || (size(x, 1) == 1 && ndims(x) == 2))
        error('scistack:unsupportedValue', ['a %s char array cannot be stored: use a ', ...
            'char row, or a cell array of char rows'], mat2str(size(x)));
    end
    [descr, ~, data] = text_array({x});
    shape = [];
elseif isnumeric(x) || islogical(x)
    if issparse(x)
        error('scistack:unsupportedValue', 'sparse matrices cannot be stored: use full(x)');
    end
    shape = npy_shape(size(x), false);
    cx = iscomplex(x);
    if cx
        re = c_order(real(x), shape);
        im = c_order(imag(x), shape);
        v = [re(:)'; im(:)'];
        flat = v(:);
    else
        flat = c_order(x, shape);
    end
    [descr, flat] = dtype_of(flat, cx);
    data = typecast(flat(:), 'uint8');
else
    error('scistack:unsupportedValue', ['cannot store a %s as npy: numeric, logical, ', ...
        'char and cell arrays of char rows can be'], class(x));
end
bytes = [header(descr, shape), reshape(data, 1, [])];
end

function shape = npy_shape(sz, is_cell)
if all(sz == 1)
    if is_cell
        shape = 1;
    else
        shape = [];
    end
elseif numel(sz) == 2 && sz(2) == 1
    shape = sz(1);
else
    shape = sz;
end
end

function flat = c_order(x, shape)
if numel(shape) <= 1
    flat = x(:);
else
    flat = reshape(permute(x, numel(shape):-1:1), [], 1);
end
end

function [descr, flat] = dtype_of(flat, cx)
switch class(flat)
    case 'double'
        if cx
            descr = '<c16';
        else
            descr = '<f8';
        end
    case 'single'
        if cx
            descr = '<c8';
        else
            descr = '<f4';
        end
    case 'logical'
        descr = '|b1';
        flat = uint8(flat);
    case 'int8'
        descr = '|i1';
    case 'uint8'
        descr = '|u1';
    case {'int16', 'int32', 'int64'}
        descr = sprintf('<i%d', sscanf(class(flat), 'int%d') / 8);
    case {'uint16', 'uint32', 'uint64'}
        descr = sprintf('<u%d', sscanf(class(flat), 'uint%d') / 8);
    otherwise
        error('scistack:unsupportedValue', 'cannot store a %s array as npy', class(flat));
end
[~, ~, endian] = computer();
if endian == 'B' && ~strcmp(descr(1), '|')
    flat = swapbytes(flat);
end
end

function [descr, shape, data] = text_array(c)
for k = 1:numel(c)
    if ~(ischar(c{k}) && (isempty(c{k}) || size(c{k}, 1) == 1))
        error('scistack:unsupportedValue', ['only a cell array of char rows can be stored ', ...
            'as an npy text array; element %d is a %s %s'], k, mat2str(size(c{k})), ...
            class(c{k}));
    end
end
shape = npy_shape(size(c), true);
flat = c_order(c, shape);
cps = cell(1, numel(flat));
width = 1;
for k = 1:numel(flat)
    cps{k} = scistack.internal.char_to_cp(flat{k});
    width = max(width, numel(cps{k}));
end
M = zeros(width, numel(flat));
for k = 1:numel(flat)
    M(1:numel(cps{k}), k) = cps{k};
end
descr = sprintf('<U%d', width);
u = uint32(M(:));
[~, ~, endian] = computer();
if endian == 'B'
    u = swapbytes(u);
end
data = typecast(u, 'uint8');
end

function h = header(descr, shape)
if isempty(shape)
    st = '()';
elseif numel(shape) == 1
    st = sprintf('(%d,)', shape);
else
    st = ['(', strjoin(arrayfun(@(n) sprintf('%d', n), shape, 'UniformOutput', false), ', '), ')'];
end
text = sprintf('{''descr'': ''%s'', ''fortran_order'': False, ''shape'': %s, }', descr, st);
pad = mod(-(10 + numel(text) + 1), 64);
text = [text, repmat(' ', 1, pad), char(10)];
n = numel(text);
h = [uint8([147, 78, 85, 77, 80, 89, 1, 0, mod(n, 256), floor(n / 256)]), uint8(text)];
end
