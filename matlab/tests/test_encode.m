function cases = test_encode(ctx) %#ok<INUSD>
%TEST_ENCODE encode_npy / encode_json are byte-identical to the Python canonical encoding
%   (expected/encode/*, written by make_fixtures.py from the same logical values).
cases = {
    'encode_npy: every expected payload, byte for byte', @npy_bytes
    'encode_json: every expected payload, byte for byte', @json_bytes
    'float repr: shortest round trip, as Python repr (4000 doubles)', @floats
    'encode_npy -> decode_npy round trip keeps class, size and values', @npy_round_trip
    'encode_json -> decode_json round trip', @json_round_trip
    'encode errors: unsupported values are refused clearly', @refused
    };
end

function check(ctx, name, got)
want = t_read(fullfile(ctx.fixture, 'expected', 'encode', name));
got = uint8(got(:)');
if ~isequal(got, want)
    n = min(numel(got), numel(want));
    d = find(got(1:n) ~= want(1:n), 1);
    if isempty(d)
        d = n + 1;
    end
    lo = max(1, d - 20);
    error('test:failed', '%s differs at byte %d: got "%s" expected "%s"', name, d, ...
        char(got(lo:min(end, d + 40))), char(want(lo:min(end, d + 40))));
end
end

function npy_bytes(ctx)
u = @scistack.internal.cp_to_char;
E = {
    'scalar_double', 3.5
    'row_double', [1, 2, 3]
    'col_double', [1; 2; 3]
    'matrix_double', [1, 2, 3; 4, 5, 6]
    'cube_double', permute(reshape(0:23, [4, 3, 2]), [3, 2, 1])
    'empty_0x0', zeros(0, 0)
    'empty_0x1', zeros(0, 1)
    'empty_1x0', zeros(1, 0)
    'single_matrix', single([1.5, -2; 0.25, 8])
    'int8_col', int8([-128; 0; 127])
    'uint8_row', uint8([0, 1, 255])
    'int16_matrix', int16([-32768, 2; 3, 32767])
    'uint16_col', uint16([0; 65535])
    'int32_cube', permute(reshape(int32(-6:5), [2, 3, 2]), [3, 2, 1])
    'uint32_col', uint32([0; 4294967295])
    'int64_col', [intmin('int64'); intmax('int64'); int64(0)]
    'uint64_col', [uint64(0); intmax('uint64')]
    'logical_matrix', logical([1, 0; 0, 1; 1, 1])
    'complex_col', complex([1; -3.5; 0], [2; 0; 1])
    'complex_single_row', single(complex([1, 3], [2, -4]))
    'special_col', [NaN; Inf; -Inf; -0; 5e-324]
    'char_row', 'hello'
    'char_empty', ''
    'cellstr_col', {'a'; 'bcd'; ''}
    'cellstr_matrix', {'x', 'yy'; 'zzz', u(233)}
    'long_shape', zeros([1, 1, 1, 1, 1, 1, 2, 3])
    };
files = dir(fullfile(ctx.fixture, 'expected', 'encode', 'npy_*.bin'));
t_equal(numel(files), size(E, 1), 'every expected npy payload has a MATLAB value');
for k = 1:size(E, 1)
    check(ctx, ['npy_', E{k, 1}, '.bin'], scistack.encode_npy(E{k, 2}));
end
end

function json_bytes(ctx)
u = @scistack.internal.cp_to_char;
m1 = containers.Map({'my key', 'x.y'}, {1, 'z'});
m2 = containers.Map({'$a', 'b'}, {1, 2});
E = {
    'double', 3.5
    'double_int', 2
    'double_big', 1e16
    'double_small', 1e-5
    'double_third', 1 / 3
    'double_neg_zero', -0
    'double_nan', NaN
    'double_inf', Inf
    'double_ninf', -Inf
    'complex', complex(1.5, -2)
    'int32', int32(7)
    'int64_min', intmin('int64')
    'uint64_max', intmax('uint64')
    'true', true
    'false', false
    'char', ['quote" back\ nl', char(10), ' tab', char(9), ' ctl', char(1), ' del', char(127)]
    'unicode', u([233, 26085, 128512])
    'empty_char', ''
    'none', []
    'cell', {1, 'a', true, []}
    'empty_cell', {}
    'struct', struct('zeta', 1, 'alpha', 'a', 'Mid', {{2, 3}})
    'nested', struct('a', struct('b', {{struct('c', 1.5)}}))
    'map_badkeys', m1
    'map_dollar', m2
    'single', single(0.1)
    'struct_array', struct('a', {1, 2})
    'bigish', 123456789012
    'fraction', 0.1
    'neg_exp', -2.5e-10
    };
files = dir(fullfile(ctx.fixture, 'expected', 'encode', 'json_*.json'));
t_equal(numel(files), size(E, 1), 'every expected json payload has a MATLAB value');
for k = 1:size(E, 1)
    check(ctx, ['json_', E{k, 1}, '.json'], scistack.encode_json(E{k, 2}));
end
end

function floats(ctx)
fid = fopen(fullfile(ctx.fixture, 'expected', 'floats.bin'), 'r');
f = fread(fid, Inf, 'double');
fclose(fid);
want = strsplit(fileread(fullfile(ctx.fixture, 'expected', 'floats.txt')), char(10));
bad = {};
for k = 1:numel(f)
    got = scistack.internal.float_repr(f(k));
    if ~strcmp(got, want{k})
        bad{end + 1} = sprintf('%s (want %s)', got, want{k}); %#ok<AGROW>
    end
end
t_assert(isempty(bad), '%d of %d differ: %s', numel(bad), numel(f), ...
    strjoin(bad(1:min(end, 5)), ', '));
t_assert(numel(f) > 3000, 'the fixture holds the doubles');
end

function npy_round_trip(ctx) %#ok<INUSD>
classes = {'double', 'single', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', ...
    'int64', 'uint64', 'logical'};
sizes = {[1, 1], [5, 1], [1, 5], [2, 3], [2, 3, 4], [0, 0], [0, 1], [1, 0], [3, 0, 2], ...
    [2, 1, 3], [1, 1, 3]};
for c = 1:numel(classes)
    for s = 1:numel(sizes)
        n = prod(sizes{s});
        x = reshape(mod((1:n) * 37, 101), [sizes{s}, 1]);
        if strcmp(classes{c}, 'logical')
            x = mod(x, 2) == 1;
        else
            x = cast(x, classes{c});
        end
        y = scistack.decode_npy(scistack.encode_npy(x));
        t_equal(y, x, sprintf('%s %s', classes{c}, mat2str(sizes{s})));
    end
end
z = complex(reshape(1:6, 2, 3), reshape(6:-1:1, 2, 3));
t_equal(scistack.decode_npy(scistack.encode_npy(z)), z, 'complex');
z0 = complex([1, 2], [0, 0]);
y0 = scistack.decode_npy(scistack.encode_npy(z0));
t_assert(iscomplex(y0), 'complex with zero imaginary parts stays complex');
c = {'ab', ''; 'c', 'def'};
t_equal(scistack.decode_npy(scistack.encode_npy(c)), c, 'cellstr');
t_equal(scistack.decode_npy(scistack.encode_npy({'only'})), {'only'}, '1x1 cellstr -> (1,)');
end

function json_round_trip(ctx) %#ok<INUSD>
v = struct('a', 1.5, 'b', {{'x', int32(3), true, [], {}}}, 'c', struct('d', -0), ...
    'e', NaN, 'f', complex(1, 2), 'g', intmax('uint64'), 'h', single(2.5));
w = scistack.decode_json(scistack.encode_json(v));
t_equal(w.a, 1.5, 'a');
t_equal(w.b, {'x', 3, true, [], {}}, 'b (an int32 comes back as double)');
t_equal(w.c.d, -0, '-0');
t_equal(w.e, NaN, 'nan');
t_equal(w.f, complex(1, 2), 'complex');
t_equal(w.g, intmax('uint64'), 'uint64 max');
t_equal(w.h, single(2.5), 'single');
box = containers.Map();
box('children') = {};
t = scistack.encode_json(struct('arr', [1, 2; 3, 4], 'n', 1), @(k, b) put(box, k, b));
t_equal(t, '{"arr":{"$ref":"staged:payload-1.bin"},"n":1.0}', 'child placeholder');
children = box('children');
t_equal(children{1}{1}, 'npy', 'child kind');
t_equal(scistack.decode_npy(children{1}{2}), [1, 2; 3, 4], 'child payload');
end

function ref = put(box, kind, bytes)
c = box('children');
c{end + 1} = {kind, bytes};
box('children') = c;
ref = sprintf('staged:payload-%d.bin', numel(c));
end

function refused(ctx) %#ok<INUSD>
t_error(@() scistack.encode_json(struct('a', [1, 2])), 'scistack:unsupportedValue', ...
    'child object');
t_error(@() scistack.encode_json(@sin), 'scistack:unsupportedValue', 'function_handle');
t_error(@() scistack.encode_json(['ab'; 'cd']), 'scistack:unsupportedValue', 'char');
t_error(@() scistack.encode_json({1, 2; 3, 4}), 'scistack:unsupportedValue', 'cell');
t_error(@() scistack.encode_json(containers.Map('KeyType', 'double', 'ValueType', 'any')), ...
    'scistack:unsupportedValue', 'keys');
t_error(@() scistack.encode_npy({1, 2}), 'scistack:unsupportedValue');
t_error(@() scistack.encode_npy(sparse(eye(2))), 'scistack:unsupportedValue', 'sparse');
t_error(@() scistack.encode_npy(struct()), 'scistack:unsupportedValue');
end
