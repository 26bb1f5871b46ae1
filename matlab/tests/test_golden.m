function cases = test_golden(ctx) %#ok<INUSD>
%TEST_GOLDEN The shared golden vectors (tests/data/golden, written by Python's object store
%   and pinned by the Python tests) read from MATLAB: every npy, json and bytes object decodes
%   from the object file as the store wrote it (raw or zstd), arrays to the class, size and
%   values numpy has; MATLAB's encoders give back the very payloads (so the same oids) where
%   MATLAB keeps the value exactly; table objects decode to the columns pyarrow reads.
%   pyproject.py copies the object files into the project and writes golden/cases.json.
cases = {
    'npy arrays decode to numpy''s class, size and values', @arrays
    'encode_npy of a decoded array gives the golden payload back', @arrays_encode
    'npy strings, json values and bytes decode', @others
    'json values MATLAB keeps exactly encode to the golden payload', @json_encode
    'table objects decode to a struct of columns with pyarrow''s values', @tables
    'a damaged table stream is scistack:corruptObject, never an index error', @damaged_tables
    };
end

function C = golden_cases(ctx)
C = jsondecode(fileread(fullfile(ctx.pyproject, 'golden', 'cases.json')));
if isstruct(C)
    C = num2cell(C);
end
end

function C = table_cases(ctx)
C = golden_cases(ctx);
C = C(cellfun(@(c) strcmp(c.kind, 'table'), C));
end

function payload = golden_payload(ctx, oid)
bytes = scistack.internal.read_stored(ctx.pyproject, oid);
z = find(bytes == 0, 1);
payload = bytes(z + 1:end)';
end

function arrays(ctx)
C = golden_cases(ctx);
n = 0;
for k = 1:numel(C)
    c = C{k};
    if ~strcmp(c.kind, 'npy') || ~isfield(c, 'cls') || isempty(c.cls)
        continue
    end
    [x, info] = scistack.read_object(ctx.pyproject, c.oid);
    t_equal(info.descr, c.descr, [c.name, ' descr']);
    t_assert(strcmp(class(x), c.cls), '%s: class %s, expected %s', c.name, class(x), c.cls);
    t_assert(isequal(size(x), c.size(:)'), '%s: size %s, expected %s', c.name, ...
        mat2str(size(x)), mat2str(c.size(:)'));
    t_assert(iscomplex(x) == c.complex, '%s: complexity', c.name);
    if c.complex
        v = [real(x(:)).'; imag(x(:)).'];
        got = typecast(v(:), 'uint8');
    elseif islogical(x)
        got = uint8(x(:));
    else
        got = typecast(x(:), 'uint8');
    end
    want = t_read(fullfile(ctx.pyproject, 'golden', 'npy', [c.name, '.bin']));
    t_assert(isequal(got(:)', want), '%s: values (column-major bytes) differ', c.name);
    n = n + 1;
end
t_assert(n >= 20, 'only %d golden arrays were checked', n);
end

function arrays_encode(ctx)
C = golden_cases(ctx);
n = 0;
for k = 1:numel(C)
    c = C{k};
    if ~strcmp(c.kind, 'npy') || ~isfield(c, 'encodable') || isempty(c.encodable) || ...
            ~c.encodable
        continue
    end
    x = scistack.read_object(ctx.pyproject, c.oid);
    t_assert(isequal(scistack.encode_npy(x), golden_payload(ctx, c.oid)), ...
        '%s: encode_npy does not give the golden payload back', c.name);
    n = n + 1;
end
t_assert(n >= 15, 'only %d golden arrays were re-encoded', n);
end

function others(ctx)
C = golden_cases(ctx);
n = 0;
w = warning('off', 'scistack:bigInt');   % 2**64 and -(2**100): the nearest double, warned
restore = onCleanup(@() warning(w)); %#ok<NASGU>
for k = 1:numel(C)
    c = C{k};
    if ~isempty(c.error)
        continue
    end
    if strcmp(c.kind, 'npy') && isfield(c, 'strings') && ~isempty(c.strings)
        x = scistack.read_object(ctx.pyproject, c.oid);
        want = c.strings;
        if ~iscell(want)
            want = {want};
        end
        if isempty(c.shape)
            x = {x};
        end
        got = cellfun(@(s) double(scistack.internal.char_to_cp(s)), x(:)', ...
            'UniformOutput', false);
        exp = cellfun(@(h) hex2dec(strsplit(h, ' '))', want(:)', 'UniformOutput', false);
        exp(cellfun(@isempty, want(:)')) = {zeros(1, 0)};
        t_assert(isequal(got, exp), '%s: strings differ', c.name);
        n = n + 1;
    elseif strcmp(c.kind, 'json')
        x = scistack.read_object(ctx.pyproject, c.oid);     % decodes without an error
        if strcmp(c.name, 'json_int_big')
            t_equal(x, 2^64, 'beyond 64 bits: the nearest double');
        elseif strcmp(c.name, 'scalar_uint64')
            t_equal(x, intmax('uint64'), 'uint64 scalar, exact');
        elseif strcmp(c.name, 'json_nested_with_child_array')
            t_equal(x.emg, (0:3)', 'child array');
        end
        n = n + 1;
    elseif strcmp(c.kind, 'bytes')
        x = scistack.read_object(ctx.pyproject, c.oid);
        t_equal(class(x), 'uint8', [c.name, ' class']);
        want = uint8(hex2dec(reshape(c.hex, 2, [])'));
        if isempty(c.hex)
            want = zeros(0, 1, 'uint8');
        end
        t_assert(isequal(x(:), want(:)), '%s: bytes differ', c.name);
        n = n + 1;
    end
end
t_assert(n >= 45, 'only %d golden strings, json values and bytes were read', n);
end

function json_encode(ctx)
% Values the number rule keeps: floats, None, bools, strings, complex, empty containers,
% float32 and complex64 numpy scalars. (Python ints become doubles in MATLAB, tuples
% become lists, $dict values and children need oids MATLAB cannot compute.)
names = {'json_none', 'json_true', 'json_false', 'json_float_one', ...
    'json_float_negative_zero', 'json_float_tenth', 'json_float_1e16', 'json_float_small', ...
    'json_float_nan', 'json_float_inf', 'json_float_neg_inf', 'json_complex', ...
    'json_str_empty', 'json_str_unicode', 'json_list_empty', 'json_dict_empty', ...
    'scalar_float32', 'scalar_float32_nan', 'scalar_complex64', 'scalar_str'};
C = golden_cases(ctx);
by_name = cellfun(@(c) c.name, C, 'UniformOutput', false);
for k = 1:numel(names)
    c = C{strcmp(by_name, names{k})};
    x = scistack.read_object(ctx.pyproject, c.oid);
    if strcmp(names{k}, 'scalar_str')
        t_equal(x, ['h', scistack.internal.cp_to_char(233), 'llo'], 'numpy str_ -> char');
        continue
    end
    got = uint8(scistack.encode_json(x));
    t_assert(isequal(got, golden_payload(ctx, c.oid)), '%s: encode_json gives %s', ...
        names{k}, char(got));
end
end

function tables(ctx)
C = table_cases(ctx);
n = 0;
for k = 1:numel(C)
    c = C{k};
    [x, info] = scistack.decode_table(scistack.read_object(ctx.pyproject, c.oid, '', [], true));
    t_assert(isequaln(scistack.read_object(ctx.pyproject, c.oid), x), '%s: read_object', c.name);
    want = c.columns;
    if isstruct(want)
        want = num2cell(want);
    end
    t_equal(numel(info.schema), numel(want), [c.name, ': columns']);
    for j = 1:numel(want)
        w = want{j};
        t_equal(info.schema(j).name, w.name, [c.name, ': column name']);
        got = x.(info.schema(j).field);
        values = w.values;
        if ~iscell(values)
            values = num2cell(values);
        end
        label = sprintf('%s.%s', c.name, w.name);
        t_equal(size(got), [numel(values), 1], [label, ': a column']);
        for r = 1:numel(values)
            v = values{r};
            switch w.compare
                case 'text'
                    if isempty(v)
                        v = '';
                    end
                    t_equal(got{r}, v, label);
                case 'int'
                    if isempty(v) || (isnumeric(v) && isnan(v))
                        t_assert(isnan(got(r)), '%s row %d: missing is NaN', label, r);
                    else
                        t_equal(sprintf('%d', got(r)), v, label);
                    end
                case 'time'
                    t_equal(class(got), 'int64', [label, ': counts']);
                    if isempty(v)
                        t_equal(got(r), intmin('int64'), [label, ': missing']);
                    else
                        t_equal(sprintf('%d', got(r)), v, label);
                    end
                case 'float'
                    if isempty(v)
                        v = NaN;
                    end
                    t_assert(isequaln(double(got(r)), v), '%s row %d', label, r);
                case 'bool'
                    if isempty(v)
                        t_assert(isnan(got(r)), '%s row %d: missing is NaN', label, r);
                    else
                        t_equal(logical(got(r)), logical(v), label);
                    end
            end
        end
    end
    n = n + 1;
end
t_assert(n >= 4, 'only %d golden tables', n);
end

function damaged_tables(ctx)
% Cut short anywhere, or a byte changed anywhere: the decoder says the object is corrupt (or,
% for a changed type, unsupported), and never fails inside with an index out of bounds or an
% allocation as large as a corrupt length.
C = table_cases(ctx);
n = 0;
for k = 1:numel(C)
    c = C{k};
    payload = scistack.read_object(ctx.pyproject, c.oid, '', [], true);
    for cut = 0:23:numel(payload) - 1
        n = n + check_damaged(payload(1:cut), c.name);
    end
    for at = 1:11:numel(payload)
        damaged = payload;
        damaged(at) = bitxor(damaged(at), uint8(255));
        n = n + check_damaged(damaged, c.name);
    end
end
t_assert(n > 100, 'only %d damaged streams tried', n);
end

function n = check_damaged(payload, name)
n = 1;
try
    scistack.decode_table(payload);
catch err
    t_assert(any(strcmp(err.identifier, {'scistack:corruptObject', 'scistack:unsupportedKind'})), ...
        '%s damaged: %s (%s)', name, err.message, err.identifier);
end
end
