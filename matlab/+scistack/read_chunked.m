function [x, info] = read_chunked(root, oid, ranges, manifest)
%READ_CHUNKED A chunked array (docs/format.md 1.6) whole, or one sub-block of it.
%   X = scistack.read_chunked(ROOT, OID) reads every chunk of the chunked array OID and
%   returns the MATLAB array (numpy's indexing: X(i, j) is numpy's [i-1, j-1]; a 1-D array
%   is a column).
%   X = scistack.read_chunked(ROOT, OID, RANGES) reads only the chunks that RANGES touches:
%   RANGES is a cell with one vector of 1-based indices per dimension (e.g. {30001:60000, 4}),
%   in any order, repeats allowed; [] or ':' takes a whole dimension. X is the block
%   X_whole(RANGES{:}). Only the chunks holding a requested index are read ({[1 N], 2} reads
%   the first and the last chunk of column 2, not the span between them).
%   [X, INFO] also returns INFO.shape, INFO.chunk_shape, INFO.data_type,
%   INFO.chunks_read (how many chunk objects were read) and INFO.unit (a datetime64 or
%   timedelta64 array is int64 counts of that unit, e.g. 'ns' or '10ms'; NaT is intmin).
%   MANIFEST (optional) is the manifest's payload, already read.
%   A chunked table (a large DataFrame) is read whole: X is the struct of columns
%   scistack.decode_table gives, its row groups one after another.
%
%   The manifest is Zarr v3 metadata plus the oid of every chunk in C order of the chunk
%   grid; a chunk is the raw little-endian C-order bytes of its block, zero-padded at the
%   edges. Each chunk is read with scistack.read_object (loose, packed or zstd alike).
if nargin < 4 || isempty(manifest)
    [payload, kind] = raw_payload(root, oid);
    if ~strcmp(kind, 'chunked')
        error('scistack:unsupportedKind', 'object %s has kind "%s", not chunked', oid, kind);
    end
    manifest = payload;
end
m = scistack.decode_json(manifest);
if isstruct(m) && isfield(m, 'type') && strcmp(m.type, 'table')
    if nargin >= 3 && ~isempty(ranges)
        error('scistack:badIndex', ['object %s is a chunked table: it is read whole (give no ', ...
            'ranges)'], oid);
    end
    [x, info] = read_table(root, m);
    return
end
if ~isstruct(m) || ~isfield(m, 'type') || ~strcmp(m.type, 'array')
    error('scistack:unsupportedKind', ['object %s is a chunked value of an unknown type; ', ...
        'the MATLAB client reads chunked arrays and tables. Load it in Python'], oid);
end
shape = num_list(m.zarr.shape);
chunks = num_list(m.zarr.chunk_grid.configuration.chunk_shape);
oids = m.chunks;
if ischar(oids)
    oids = {oids};
end
descr = descr_of(m.zarr.data_type);
nd = numel(shape);
grid = ceil(shape ./ chunks);
if nargin < 3 || isempty(ranges)
    ranges = cell(1, nd);
end
if numel(ranges) ~= nd
    error('scistack:badIndex', 'the array has %d dimensions; give one index vector per dimension', nd);
end
for d = 1:nd
    if isempty(ranges{d}) || (ischar(ranges{d}) && strcmp(ranges{d}, ':'))
        ranges{d} = 1:shape(d);
    end
    r = double(ranges{d});
    if any(r < 1) || any(r > shape(d)) || any(r ~= fix(r))
        error('scistack:badIndex', 'index out of range for dimension %d of size %d', d, shape(d));
    end
    ranges{d} = r;
end
% Per dimension, the distinct chunks the indices fall in and, for each, which output positions
% it fills: only those chunks are read (not the span between the lowest and highest index),
% each scattered into X at its positions. X has the index lists' shape, never the span's.
used = cell(1, nd);     % 0-based chunk indices touched, ascending
groups = cell(1, nd);   % groups{d}{m}: positions in ranges{d} that chunk used{d}(m) holds
for d = 1:nd
    [touched, order] = sort(floor((ranges{d}(:) - 1) ./ chunks(d)));
    ends = [find(diff(touched) ~= 0); numel(touched)];
    starts = [1; ends(1:end - 1, 1) + 1];
    used{d} = touched(ends)';
    groups{d} = arrayfun(@(a, b) order(a:b), starts, ends, 'UniformOutput', false);
end
counts = cellfun(@numel, used);
out_shape = mshape(cellfun(@numel, ranges));
x = [];
read = 0;
for k = 1:prod(counts)
    sub = cell(1, nd);
    [sub{:}] = ind2sub([counts, 1], k);
    index = zeros(1, nd);                    % this chunk's 0-based grid index
    for d = 1:nd
        index(d) = used{d}(sub{d});
    end
    flat = 0;
    for d = 1:nd
        flat = flat * grid(d) + index(d);
    end
    part = chunk_array(root, oids{flat + 1}, descr, chunks, oid, index);
    read = read + 1;
    % the requested indices this chunk holds: where they go in X, and where they are in it
    src = cell(1, max(nd, 2));
    dst = cell(1, max(nd, 2));
    for d = 1:nd
        dst{d} = groups{d}{sub{d}};
        src{d} = ranges{d}(dst{d}) - index(d) * chunks(d);
    end
    if nd == 1
        src{2} = 1;
        dst{2} = 1;
    end
    if isempty(x)
        x = repmat(part(1) * 0, out_shape);
        if islogical(part)
            x = false(out_shape);
        end
    end
    x(dst{:}) = part(src{:});
end
unit = '';  % a datetime64/timedelta64 array: X holds int64 counts of this unit
if isstruct(m.zarr.data_type)
    unit = descr(find(descr == '[', 1) + 1:end - 1);
end
info = struct('shape', shape, 'chunk_shape', chunks, 'data_type', m.zarr.data_type, ...
    'chunks_read', read, 'unit', unit);
end

function v = num_list(list)
if iscell(list)
    list = cellfun(@double, list);
end
v = double(list(:))';
end

function s = mshape(shape)
if numel(shape) == 1
    s = [shape, 1];
else
    s = shape;
end
end

function part = chunk_array(root, chunk_oid, descr, chunks, array_oid, index)
[payload, kind] = raw_payload(root, chunk_oid);
size_text = regexp(descr, '^[<|][a-zA-Z](\d+)', 'tokens', 'once');
itemsize = str2double(size_text{1});
if ~strcmp(kind, 'chunk') || numel(payload) ~= prod(chunks) * itemsize
    error('scistack:corruptObject', ['chunk [%s] (object %s) of chunked value %s is not a ', ...
        'chunk of %d bytes; run `scistack fsck`'], num2str(index, '%d '), chunk_oid, ...
        array_oid, prod(chunks) * itemsize);
end
if numel(chunks) == 1
    shape_text = sprintf('(%d,)', chunks);
else
    shape_text = ['(', strjoin(arrayfun(@(n) sprintf('%d', n), chunks, 'UniformOutput', false), ', '), ')'];
end
header = sprintf('{''descr'': ''%s'', ''fortran_order'': False, ''shape'': %s, }\n', descr, shape_text);
npy = [uint8([147, 78, 85, 77, 80, 89, 1, 0]), typecast(uint16(numel(header)), 'uint8'), ...
    uint8(header), payload(:)'];
part = scistack.decode_npy(npy);
end

function [payload, kind] = raw_payload(root, oid)
[payload, info] = scistack.read_object(root, oid, '', [], true);
kind = info.kind;
end

function d = descr_of(data_type)
if isstruct(data_type)  % numpy.datetime64 / numpy.timedelta64 (zarr-extensions): int64 counts
    kinds = {'numpy.datetime64', 'M'; 'numpy.timedelta64', 'm'};
    at = [];
    if isfield(data_type, 'name') && isfield(data_type, 'configuration')
        at = find(strcmp(kinds(:, 1), data_type.name), 1);
    end
    if isempty(at) || ~isfield(data_type.configuration, 'unit') || ...
            ~isfield(data_type.configuration, 'scale_factor')
        error('scistack:unsupportedDtype', 'chunked data type %s is not supported', ...
            scistack.encode_json(data_type));
    end
    c = data_type.configuration;
    scale = '';
    if double(c.scale_factor) ~= 1
        scale = sprintf('%d', double(c.scale_factor));
    end
    d = sprintf('<%s8[%s%s]', kinds{at, 2}, scale, c.unit);
    return
end
names = {'bool', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', ...
    'float16', 'float32', 'float64', 'complex64', 'complex128'};
descrs = {'|b1', '|i1', '|u1', '<i2', '<u2', '<i4', '<u4', '<i8', '<u8', '<f2', '<f4', ...
    '<f8', '<c8', '<c16'};
at = find(strcmp(names, data_type), 1);
if isempty(at)
    error('scistack:unsupportedDtype', 'chunked data type %s is not supported', data_type);
end
d = descrs{at};
end

function [x, info] = read_table(root, m)
% A chunked table: its head (the zero-row table, with the names and pandas' metadata), then
% each row group's columns appended, column by column in the head's order.
x = scistack.decode_table(scistack.read_object(root, m.head, '', [], true));
names = fieldnames(x);
groups = m.chunks;
if ischar(groups)
    groups = {groups};
end
parts = cell(numel(groups), numel(names));
for g = 1:numel(groups)
    part = scistack.decode_table(scistack.read_object(root, groups{g}, '', [], true));
    got = struct2cell(part);
    if numel(got) ~= numel(names)
        error('scistack:corruptObject', ['row group %d (object %s) of a chunked table has %d ', ...
            'columns, its head %d'], g, groups{g}, numel(got), numel(names));
    end
    parts(g, :) = got';
end
for k = 1:numel(names)
    column = [{x.(names{k})}; parts(:, k)];
    classes = cellfun(@class, column, 'UniformOutput', false);
    if numel(unique(classes)) > 1 && ~all(cellfun(@iscell, column))
        column = cellfun(@double, column, 'UniformOutput', false);  % a group with missing values
    end
    x.(names{k}) = vertcat(column{:});
end
rows = 0;
if ~isempty(names)
    rows = numel(x.(names{1}));
end
info = struct('shape', [rows, numel(names)], 'chunk_shape', [], 'data_type', 'table', ...
    'chunks_read', numel(groups));
end
