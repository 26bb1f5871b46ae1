function text = encode_json(x, put_child)
%ENCODE_JSON Canonical JSON text (docs/format.md section 1.2) of a MATLAB value.
%   TEXT = scistack.encode_json(X) returns a char row, byte-identical to what Python
%   scistack writes for the corresponding Python value:
%     []  (0x0 double)          -> null
%     logical scalar            -> true / false
%     double scalar             -> a Python float, ALWAYS (3 -> 3.0, 1e16 -> 1e+16; NaN,
%                                  Inf, -Inf -> {"$float": ...}); complex -> {"$complex":..}
%     single scalar             -> {"$np": ["<f4", v]} (complex: ["<c8", [re, im]])
%     int8..uint64 scalar       -> a Python int (exact, also beyond 2^53)
%     char row                  -> string ('' -> "")
%     cell vector               -> list (a cell never becomes a tuple)
%     scalar struct             -> dict (keys sorted); struct array -> list of dicts
%     containers.Map (char keys)-> dict, or {"$dict": pairs} when a key starts with $
%     numeric and logical arrays (numel ~= 1) inside a container -> child npy objects
%   TEXT = scistack.encode_json(X, PUT_CHILD) stores each child with PUT_CHILD(kind, bytes),
%   which returns the text to place in {"$ref": ...} (an oid, or a staging placeholder).
%   Without PUT_CHILD a value that needs a child object raises scistack:unsupportedValue.
if nargin < 2
    put_child = [];
end
text = enc(x, put_child);
end

function t = enc(x, put_child)
if isa(x, 'containers.Map')
    t = enc_map(x, put_child);
elseif isstruct(x)
    if isscalar(x)
        keys = fieldnames(x)';
        vals = cell(1, numel(keys));
        for j = 1:numel(keys)
            vals{j} = x.(keys{j});
        end
        t = enc_dict(keys, vals, put_child);
    else
        parts = cell(1, numel(x));
        for j = 1:numel(x)
            parts{j} = enc(x(j), put_child);
        end
        t = ['[', strjoin(parts, ','), ']'];
    end
elseif iscell(x)
    if isempty(x)
        t = '[]';
    elseif isvector(x)
        parts = cell(1, numel(x));
        for j = 1:numel(x)
            parts{j} = enc(x{j}, put_child);
        end
        t = ['[', strjoin(parts, ','), ']'];
    else
        error('scistack:unsupportedValue', ['a %s cell array has no JSON form: only cell ', ...
            'vectors become lists. Nest cells ({row1, row2}) or use a struct'], ...
            mat2str(size(x)));
    end
elseif ischar(x)
    if isempty(x)
        t = '""';
    elseif size(x, 1) == 1 && ndims(x) == 2
        t = scistack.internal.json_string(x);
    else
        error('scistack:unsupportedValue', ['a %s char array has no JSON form: store ', ...
            'text as a char row, or several texts as a cell array of char rows'], ...
            mat2str(size(x)));
    end
elseif islogical(x)
    if isscalar(x)
        if x
            t = 'true';
        else
            t = 'false';
        end
    else
        t = child(x, put_child);
    end
elseif isnumeric(x)
    if issparse(x)
        error('scistack:unsupportedValue', 'sparse matrices cannot be stored: use full(x)');
    end
    if isa(x, 'double') && isequal(size(x), [0, 0])
        t = 'null';
    elseif ~isscalar(x)
        t = child(x, put_child);
    elseif isinteger(x)
        t = scistack.internal.int_to_dec(x);
    elseif isa(x, 'double')
        if iscomplex(x)
            t = sprintf('{"$complex":[%s,%s]}', flt(real(x)), flt(imag(x)));
        else
            t = flt(x);
        end
    else
        if iscomplex(x)
            t = sprintf('{"$np":["<c8",[%s,%s]]}', flt(real(x)), flt(imag(x)));
        else
            t = sprintf('{"$np":["<f4",%s]}', flt(x));
        end
    end
else
    error('scistack:unsupportedValue', ['cannot store a value of class %s: scistack ', ...
        'stores numbers, logicals, char, cell vectors, structs, containers.Map and ', ...
        'numeric/logical/char arrays (convert it to one of these)'], class(x));
end
end

function t = flt(v)
v = double(v);
if isnan(v)
    t = '{"$float":"nan"}';
elseif isinf(v) && v > 0
    t = '{"$float":"inf"}';
elseif isinf(v)
    t = '{"$float":"-inf"}';
else
    t = scistack.internal.float_repr(v);
end
end

function t = child(x, put_child)
if isempty(put_child)
    error('scistack:unsupportedValue', ['a %s %s inside a container is stored as a child ', ...
        'object, which needs a store: save it through a variable (save/stage) or pass ', ...
        'PUT_CHILD'], mat2str(size(x)), class(x));
end
ref = put_child('npy', scistack.encode_npy(x));
t = ['{"$ref":', scistack.internal.json_string(ref), '}'];
end

function t = enc_map(m, put_child)
if ~strcmp(m.KeyType, 'char')
    error('scistack:unsupportedValue', ['containers.Map keys must be char to be stored ', ...
        '(JSON object keys are strings); this map has %s keys'], m.KeyType);
end
keys = m.keys();
vals = m.values();
t = enc_dict(keys, vals, put_child);
end

function t = enc_dict(keys, vals, put_child)
if isempty(keys)
    t = '{}';
    return
end
order = scistack.internal.codepoint_order(keys);
keys = keys(order);
vals = vals(order);
dollar = false;
for j = 1:numel(keys)
    if ~isempty(keys{j}) && keys{j}(1) == '$'
        dollar = true;
    end
end
parts = cell(1, numel(keys));
for j = 1:numel(keys)
    k = scistack.internal.json_string(keys{j});
    v = enc(vals{j}, put_child);
    if dollar
        parts{j} = ['[', k, ',', v, ']'];
    else
        parts{j} = [k, ':', v];
    end
end
if dollar
    t = ['{"$dict":[', strjoin(parts, ','), ']}'];
else
    t = ['{', strjoin(parts, ','), '}'];
end
end
