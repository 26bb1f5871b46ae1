function [value, info] = decode_table(bytes)
%DECODE_TABLE The columns of a `table` payload: an Arrow IPC stream (docs/format.md 1.3).
%   [VALUE, INFO] = scistack.decode_table(BYTES) reads the stream's schema, its dictionaries
%   and its one record batch, and returns VALUE, a struct with one field per column (column
%   vectors with one row per table row, in the table's column order; an index pandas stored
%   as a column is a column too, a RangeIndex is not). A Series' values are the field named
%   as the Series (`value` when it has no name). Field names are the column names made valid
%   (scistack.internal.field_name). INFO has fields rows, type ('dataframe', 'series' or
%   'arrow') and schema: per column, its name (as stored), field, type (Arrow's) and unit.
%
%   Columns: float64/float32 -> double/single; intN/uintN -> intN/uintN, or double with NaN
%   where a value is missing; bool -> logical (double with NaN where missing); strings and
%   categories -> cell column of char rows ('' where missing); timestamp/date/duration ->
%   int64 counts of INFO.schema.unit since 1970-01-01 (missing: intmin('int64'), as npy's
%   NaT); binary -> cell column of uint8 columns; an all-missing column -> double NaN.
%   Any other Arrow type (lists, structs, decimals...) raises scistack:unsupportedKind.
%
%   In MATLAB, struct2table(VALUE) makes a table of it.
bytes = uint8(bytes(:));
pos = 0;  % 0-based offset of the next message
schema = [];
dictionaries = struct('id', {}, 'values', {});
batch = [];
body = [];
while pos + 8 <= numel(bytes)
    len = at(bytes, pos, 'int32');
    if len == -1  % continuation marker, then the length
        len = at(bytes, pos + 4, 'int32');
        pos = pos + 8;
    else
        pos = pos + 4;
    end
    if len == 0
        break  % end of stream
    end
    msg = root_table(bytes, pos);
    kind = scalar(bytes, msg, 1, 0, 'uint8');
    header = field_table(bytes, msg, 2);
    body_len = scalar(bytes, msg, 3, 0, 'int64');
    body_start = pos + len;
    if body_start + body_len > numel(bytes)
        corrupt('a message body runs past the end of the stream');
    end
    switch kind
        case 1  % Schema
            schema = read_schema(bytes, header);
        case 2  % DictionaryBatch
            if isempty(schema)
                corrupt('a dictionary comes before the schema');
            end
            id = scalar(bytes, header, 0, 0, 'int64');
            data = field_table(bytes, header, 1);
            field = schema.dict_fields(find([schema.dict_fields.dict_id] == id, 1));
            if isempty(field)
                corrupt(sprintf('dictionary %d belongs to no column', id));
            end
            values_field = field;
            values_field.dict_id = -1;
            dictionaries(end + 1) = struct('id', id, 'values', ...
                {read_columns(bytes, data, body_start, values_field, dictionaries)});  %#ok<AGROW>
        case 3  % RecordBatch
            batch = header;
            body = body_start;
        otherwise
            error('scistack:unsupportedKind', ['an Arrow stream message of type %d (not a ', ...
                'schema, dictionary or record batch): load it in Python'], kind);
    end
    pos = body_start + body_len;
end
if isempty(schema) || isempty(batch)
    corrupt('the stream has no schema or no record batch');
end
columns = read_columns(bytes, batch, body, schema.fields, dictionaries);
rows = scalar(bytes, batch, 0, 0, 'int64');
info = struct('rows', rows, 'type', schema.type, 'schema', struct('name', {}, 'field', {}, ...
    'type', {}, 'unit', {}));
value = struct();
for k = 1:numel(schema.fields)
    f = schema.fields(k);
    name = f.name;
    if strcmp(schema.type, 'series') && strcmp(name, '__series__')
        name = schema.series_name;
    end
    try
        field = scistack.internal.field_name(name);
    catch
        corrupt('a column name is not valid text');
    end
    while isfield(value, field)  % two names made valid alike
        field = [field, '_'];  %#ok<AGROW>
    end
    value.(field) = columns{k};
    info.schema(end + 1) = struct('name', name, 'field', field, 'type', f.type_text, 'unit', f.unit);
end
end

% -- the schema ------------------------------------------------------------------------
function schema = read_schema(b, t)
fields = vector_tables(b, t, 1);
schema.fields = repmat(empty_field(), 0, 1);
schema.dict_fields = repmat(empty_field(), 0, 1);
for k = 1:numel(fields)
    f = read_field(b, fields(k));
    schema.fields(end + 1) = f;
    if f.dict_id >= 0
        schema.dict_fields(end + 1) = f;
    end
end
meta = key_values(b, t, 2);
schema.type = 'arrow';
schema.series_name = 'value';
if isKey(meta, 'scistack')
    schema.type = meta('scistack');
end
if isKey(meta, 'scistack.series_name')
    try
        named = scistack.decode_json(meta('scistack.series_name'));
    catch
        corrupt('the Series name is not JSON');
    end
    if isstruct(named) && isfield(named, 'v') && ischar(named.v) && ~isempty(named.v)
        schema.series_name = named.v;
    end
end
end

function f = empty_field()
f = struct('name', '', 'type_id', 0, 'type', [], 'type_text', '', 'unit', '', 'dict_id', -1, ...
    'index_type', []);
end

function f = read_field(b, t)
f = empty_field();
f.name = field_string(b, t, 0);
f.type_id = scalar(b, t, 2, 0, 'uint8');
f.type = field_table(b, t, 3);
children = vector_tables(b, t, 5);
if ~isempty(children) && ~any(f.type_id == [12, 13, 16, 17, 21])
    corrupt(sprintf('column %s has child fields', f.name));
end
[f.type_text, f.unit] = type_text(b, f.type_id, f.type, f.name);
dict = field_table(b, t, 4);
if ~isempty(dict)
    f.dict_id = scalar(b, dict, 0, 0, 'int64');
    f.index_type = field_table(b, dict, 1);  % an Int table (bitWidth, is_signed)
    if isempty(f.index_type)
        corrupt(sprintf('column %s is dictionary-encoded without an index type', f.name));
    end
    f.type_text = sprintf('dictionary<%s>', f.type_text);
end
end

function [text, unit] = type_text(b, id, t, name)
units = {'s', 'ms', 'us', 'ns'};
unit = '';
switch id
    case 1
        text = 'null';
    case 2
        text = int_class(b, t);
    case 3
        text = pick({'float16', 'float32', 'float64'}, scalar(b, t, 0, 0, 'int16'));
    case 4
        text = 'binary';
    case 5
        text = 'string';
    case 6
        text = 'bool';
    case 8
        if scalar(b, t, 0, 1, 'int16') == 0
            text = 'date32';
            unit = 'D';
        else
            text = 'date64';
            unit = 'ms';
        end
    case 10
        unit = pick(units, scalar(b, t, 0, 0, 'int16'));
        tz = field_string(b, t, 1);
        if isempty(tz)
            text = sprintf('timestamp[%s]', unit);
        else
            text = sprintf('timestamp[%s, tz=%s]', unit, tz);
        end
    case 18
        unit = pick(units, scalar(b, t, 0, 1, 'int16'));
        text = sprintf('duration[%s]', unit);
    case 19
        text = 'large_binary';
    case 20
        text = 'large_string';
    otherwise
        error('scistack:unsupportedKind', ['column %s has an Arrow type (number %d: a list, ', ...
            'struct, decimal or other nested type) the MATLAB client cannot decode; load it ', ...
            'in Python'], name, id);
end
end

% -- the record batch ------------------------------------------------------------------
function columns = read_columns(b, batch, body, fields, dictionaries)
nodes = vector_items(b, batch, 1, 16);
buffers = vector_items(b, batch, 2, 16);
if ~isempty(field_table(b, batch, 3))
    error('scistack:unsupportedKind', ['the table''s Arrow stream is compressed, which the ', ...
        'MATLAB client cannot read; load it in Python']);
end
columns = cell(1, numel(fields));
nb = 0;
for k = 1:numel(fields)
    f = fields(k);
    if k > numel(nodes)
        corrupt('fewer field nodes than columns');
    end
    n = at(b, nodes(k), 'int64');
    nulls = at(b, nodes(k) + 8, 'int64');
    if n < 0 || nulls < 0 || nulls > n || (n > 8 * numel(b) && f.type_id ~= 1)
        corrupt(sprintf('column %s claims %d rows, %d missing', f.name, n, nulls));  % before any allocation
    end
    if f.dict_id >= 0
        [valid, nb] = validity(b, body, buffers, nb, n, nulls);
        [idx, nb] = fixed(b, body, buffers, nb, n, int_class(b, f.index_type));
        d = find([dictionaries.id] == f.dict_id, 1);
        if isempty(d)
            corrupt(sprintf('column %s names a dictionary the stream does not hold', f.name));
        end
        values = dictionaries(d).values{1};
        idx = double(idx);
        if any(idx(valid) < 0 | idx(valid) >= numel(values))
            corrupt(sprintf('column %s has a dictionary index out of range', f.name));
        end
        col = repmat(missing_of(values), n, 1);
        col(valid) = values(idx(valid) + 1);
        columns{k} = col;
        continue
    end
    switch f.type_id
        case 1  % null: no buffers
            columns{k} = nan(n, 1);
        case {2, 3, 8, 10, 18}
            [valid, nb] = validity(b, body, buffers, nb, n, nulls);
            [col, nb] = fixed(b, body, buffers, nb, n, value_class(b, f));
            if f.type_id == 8 && strcmp(f.unit, 'D')
                col = int64(col);
            end
            if any(~valid)
                if any(f.type_id == [8, 10, 18])
                    col(~valid) = intmin('int64');
                else
                    if isinteger(col)
                        col = double(col);
                    end
                    col(~valid) = NaN;
                end
            end
            columns{k} = col;
        case 6  % bool: one bit per value
            [valid, nb] = validity(b, body, buffers, nb, n, nulls);
            [bits, nb] = bitmap(b, body, buffers, nb, n);
            if any(~valid)
                bits = double(bits);
                bits(~valid) = NaN;
            end
            columns{k} = bits;
        case {4, 5, 19, 20}  % binary / string, 32- or 64-bit offsets
            [valid, nb] = validity(b, body, buffers, nb, n, nulls);
            if any(f.type_id == [19, 20])
                [offsets, nb] = fixed(b, body, buffers, nb, n + 1, 'int64');
            else
                [offsets, nb] = fixed(b, body, buffers, nb, n + 1, 'int32');
            end
            [start, len] = buffer_at(b, buffers, nb);
            nb = nb + 1;
            offsets = double(offsets);
            if n > 0 && (offsets(1) < 0 || any(diff(offsets) < 0) || offsets(end) > len)
                corrupt(sprintf('column %s has string offsets out of range', f.name));
            end
            data = slice(b, body + start, len);
            data = data(offsets(1) + 1:offsets(end));
            lengths = diff(offsets(:));
            if any(f.type_id == [4, 19])
                col = mat2cell(data(:), lengths, 1);  % (one cell per row, in one call)
            elseif all(data < 128) || scistack.internal.is_octave()
                col = mat2cell(char(data(:)'), 1, lengths)';
            else  % MATLAB's UTF-16 chars: each row decoded
                col = cell(n, 1);
                ends = offsets(2:end) - offsets(1);
                for r = 1:n
                    col{r} = scistack.internal.bytes_to_text(data(ends(r) - lengths(r) + 1:ends(r))');
                end
            end
            if any(f.type_id == [4, 19])
                col(~valid) = {zeros(0, 1, 'uint8')};
            else
                col(~valid) = {''};
            end
            columns{k} = col;
        otherwise
            error('scistack:unsupportedKind', 'column %s: Arrow type number %d', f.name, f.type_id);
    end
end
end

function m = missing_of(values)
if iscell(values)
    m = {''};
else
    m = NaN;
end
end

function cls = value_class(b, f)
switch f.type_id
    case 2
        cls = int_class(b, f.type);
    case 3
        cls = pick({'', 'single', 'double'}, scalar(b, f.type, 0, 0, 'int16'));
        if isempty(cls)
            error('scistack:unsupportedKind', 'column %s is float16; load it in Python', f.name);
        end
    case 8
        if strcmp(f.unit, 'D')
            cls = 'int32';
        else
            cls = 'int64';
        end
    otherwise
        cls = 'int64';
end
end

function cls = int_class(b, t)
bits = scalar(b, t, 0, 0, 'int32');
if scalar(b, t, 1, 0, 'uint8')
    cls = sprintf('int%d', bits);
else
    cls = sprintf('uint%d', bits);
end
if ~any(bits == [8, 16, 32, 64])
    corrupt(sprintf('an integer of %d bits', bits));
end
end

function [valid, nb] = validity(b, body, buffers, nb, n, nulls)
% a column's validity bitmap (true: present); a column with no missing value may omit it
if nulls == 0
    valid = true(n, 1);
    nb = nb + 1;
else
    [valid, nb] = bitmap(b, body, buffers, nb, n);
end
end

function [bits, nb] = bitmap(b, body, buffers, nb, n)
[start, len] = buffer_at(b, buffers, nb);
nb = nb + 1;
if len * 8 < n
    corrupt('a bitmap shorter than its column');
end
raw = slice(b, body + start, ceil(n / 8));
bits = false(n, 1);
for bit = 0:7
    bits(bit + 1:8:n) = bitand(raw(1:numel(bit + 1:8:n)), uint8(2^bit)) ~= 0;
end
end

function [col, nb] = fixed(b, body, buffers, nb, n, cls)
[start, len] = buffer_at(b, buffers, nb);
nb = nb + 1;
width = numel(typecast(zeros(1, 1, cls), 'uint8'));
if len < n * width
    corrupt('a column''s values buffer is shorter than its rows');
end
if n == 0
    col = zeros(0, 1, cls);
    return
end
col = typecast(slice(b, body + start, n * width), cls);
col = col(:);
end

function [start, len] = buffer_at(b, buffers, k)
if k + 1 > numel(buffers)
    corrupt('fewer buffers than the columns need');
end
start = at(b, buffers(k + 1), 'int64');
len = at(b, buffers(k + 1) + 8, 'int64');
end

% -- flatbuffers (positions are 0-based offsets into b) ---------------------------------
function t = root_table(b, pos)
t = pos + at(b, pos, 'uint32');
end

function p = field_pos(b, t, slot)
% the position of field SLOT of the table at T, or -1 when absent (or when T is: no table)
if isempty(t)
    p = -1;
    return
end
vt = t - at(b, t, 'int32');
vt_len = at(b, vt, 'uint16');
if 4 + 2 * slot + 2 > vt_len
    p = -1;
    return
end
off = at(b, vt + 4 + 2 * slot, 'uint16');
if off == 0
    p = -1;
else
    p = t + off;
end
end

function v = scalar(b, t, slot, default, cls)
% field SLOT of the table at T, a scalar of class CLS, or DEFAULT when absent
p = field_pos(b, t, slot);
if p < 0
    v = default;
else
    v = at(b, p, cls);
end
end

function t = field_table(b, t, slot)
p = field_pos(b, t, slot);
if p < 0
    t = [];
else
    t = p + at(b, p, 'uint32');
end
end

function s = field_string(b, t, slot)
p = field_table(b, t, slot);
if isempty(p)
    s = '';
else
    s = scistack.internal.bytes_to_text(slice(b, p + 4, at(b, p, 'uint32'))');
end
end

function ps = vector_items(b, t, slot, width)
% the positions of the items (WIDTH bytes each) of the vector in field SLOT
v = field_table(b, t, slot);
if isempty(v)
    ps = [];
    return
end
n = at(b, v, 'uint32');
slice(b, v + 4, width * n);  % (a corrupt length must not allocate)
ps = v + 4 + width * (0:n - 1);
end

function ts = vector_tables(b, t, slot)
ps = vector_items(b, t, slot, 4);
ts = zeros(1, numel(ps));
for k = 1:numel(ps)
    ts(k) = ps(k) + at(b, ps(k), 'uint32');
end
end

function m = key_values(b, t, slot)
m = containers.Map('KeyType', 'char', 'ValueType', 'any');
for kv = vector_tables(b, t, slot)
    key = field_string(b, kv, 0);
    if isempty(key)
        corrupt('a metadata entry without a key');
    end
    m(key) = field_string(b, kv, 1);
end
end

function v = at(b, p, cls)
% the little-endian number of class CLS at byte P (0-based), as a double
v = double(typecast(slice(b, p, numel(typecast(zeros(1, 1, cls), 'uint8'))), cls));
end

function part = slice(b, p, n)
% bytes p .. p+n-1 (0-based) of the stream, which a corrupt offset or length must not pass
if p < 0 || n < 0 || p + n > numel(b) || p ~= floor(p) || n ~= floor(n)
    corrupt('a position past the end of the stream');
end
part = b(p + 1:p + n);
end

function item = pick(items, k)
% the item an enum's value K (0-based) names
if k < 0 || k >= numel(items)
    corrupt(sprintf('an enum value %d of %d', k, numel(items)));
end
item = items{k + 1};
end

function corrupt(what)
error('scistack:corruptObject', ['the table''s Arrow stream is corrupt (%s). Run `scistack ', ...
    'fsck`, then re-save the value or restore it from a backup'], what);
end
