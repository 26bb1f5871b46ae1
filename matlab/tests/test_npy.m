function cases = test_npy(ctx)
%TEST_NPY Decoding npy objects written by numpy: every dtype and shape, element order.
listing = jsondecode(fileread(fullfile(ctx.fixture, 'expected', 'npy_cases.json')));
groups = unique(regexprep({listing.name}, '_.*$', ''));
cases = cell(0, 2);
for g = 1:numel(groups)
    prefix = groups{g};
    sel = listing(strncmp({listing.name}, [prefix, '_'], numel(prefix) + 1));
    names = strjoin({sel.name}, ', ');
    cases(end + 1, :) = {sprintf('%s arrays decode like numpy (%s)', prefix, names), ...
        @(c) check_cases(c, sel)}; %#ok<AGROW>
end
cases = [cases; {
    '2-d element order: x(i,j) == a[i-1, j-1]', @order_2d
    '3-d and 4-d element order', @order_nd
    '(n,) -> n x 1 column, () -> scalar, (0,) -> 0 x 1', @vector_rule
    'fortran_order True, big-endian and strided arrays', @normalised
    'datetime64 -> int64 counts with the unit in info', @t_datetime
    'unicode and bytes strings', @t_strings
    'header and length errors', @t_errors
    }];
end

function check_cases(ctx, sel)
t_use(ctx);
for k = 1:numel(sel)
    c = sel(k);
    r = NpyCase().load('subject', 1, 'session', c.name);
    x = r.data;
    expected = t_read(fullfile(ctx.fixture, 'expected', 'npy', [c.name, '.bin']));
    t_assert(strcmp(class(x), c.class), '%s: class %s, expected %s', c.name, class(x), c.class);
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
    t_assert(isequal(got(:)', expected), '%s: values (column-major bytes) differ', c.name);
end
end

function x = npy(ctx, name) %#ok<INUSL>
r = NpyCase().load('subject', 1, 'session', name);
x = r.data;
end

function order_2d(ctx)
t_use(ctx);
% numpy: (arange(6) * 1.25 - 3.5) with [1:5] = nan, inf, -inf, -0.0; reshape(2, 3)
t_equal(npy(ctx, 'f8_2d'), [-3.5, NaN, Inf; -Inf, -0, 2.75], 'f8_2d');
t_equal(npy(ctx, 'f8_row_1x5'), 1:0.5:3, 'row');
t_equal(npy(ctx, 'f8_col_5x1'), (1:0.5:3)', 'col');
end

function order_nd(ctx)
t_use(ctx);
x = npy(ctx, 'f8_shape_4d');            % (arange(24) * 0.5 + 1).reshape(2, 3, 2, 2)
t_equal(size(x), [2, 3, 2, 2], 'size');
flat = 0;
for i = 1:2
    for j = 1:3
        for k = 1:2
            for l = 1:2
                t_equal(x(i, j, k, l), flat * 0.5 + 1, sprintf('x(%d,%d,%d,%d)', i, j, k, l));
                flat = flat + 1;
            end
        end
    end
end
y = npy(ctx, 'f8_shape_2x1x3');         % (arange(6) * 0.5 + 1).reshape(2, 1, 3)
t_equal(size(y), [2, 1, 3], '2x1x3 size');
t_equal(squeeze(y(2, 1, :))', [2.5, 3, 3.5], 'y[1, 0, :]');
t_equal(size(npy(ctx, 'f8_shape_1x1x3')), [1, 1, 3], '1x1x3');
t_equal(size(npy(ctx, 'f8_shape_2x3x1')), [2, 3], '(2, 3, 1) -> 2x3');
end

function vector_rule(ctx)
t_use(ctx);
t_equal(npy(ctx, 'f8_1d'), [-3.5; NaN; Inf; -Inf; -0], '(5,)');
t_equal(npy(ctx, 'f8_0d'), -3.5, '()');
t_equal(npy(ctx, 'f8_one_1d'), 1, '(1,)');
t_equal(npy(ctx, 'f8_empty_1d'), zeros(0, 1), '(0,)');
t_equal(npy(ctx, 'f8_empty_0x3'), zeros(0, 3), '(0, 3)');
t_equal(npy(ctx, 'f8_empty_2x0'), zeros(2, 0), '(2, 0)');
t_equal(npy(ctx, 'f8_empty_3x0x2'), zeros(3, 0, 2), '(3, 0, 2)');
t_equal(npy(ctx, 'f8_big_1d'), (0:999)' * 0.5 + 1, '(1000,)');
end

function normalised(ctx)
t_use(ctx);
t_equal(npy(ctx, 'f8_fortran_2x3'), [0, 1, 2; 3, 4, 5], 'fortran');
t_equal(npy(ctx, 'f8_bigendian_2x2'), [0, 1; 2, 3], 'big-endian');
t_equal(npy(ctx, 'i4_noncontig_2x3'), int32([0, 2, 4; 12, 14, 16]), 'strided');
% a foreign writer's Fortran-ordered payload decodes too
h = sprintf('{''descr'': ''<f8'', ''fortran_order'': True, ''shape'': (2, 3), }\n');
b = [uint8([147, double('NUMPY'), 1, 0, numel(h), 0]), uint8(h), ...
    typecast([1, 4, 2, 5, 3, 6], 'uint8')];
t_equal(scistack.decode_npy(b), [1, 2, 3; 4, 5, 6], 'fortran payload');
end

function t_datetime(ctx)
t_use(ctx);
t_equal(npy(ctx, 'M8_D_1d'), int64([18262; intmin('int64'); -1]), 'M8[D]');
t_equal(npy(ctx, 'm8_s_2d'), int64([1, -5; 3, 0]), 'm8[s]');
r = NpyCase().load('subject', 1, 'session', 'M8_ns_0d');
[x, info] = scistack.read_object(ctx.fixture, r.oid);
t_equal(x, int64(1795241016) * int64(1000000000) + int64(123456789), 'M8[ns] 0-d');
t_equal(info.unit, 'ns', 'unit');
t_equal(info.descr, '<M8[ns]', 'descr');
end

function t_strings(ctx)
t_use(ctx);
u = @scistack.internal.cp_to_char;
s = @(name) StrCase().load('subject', 1, 'session', name);
t_equal(s('U_0d').data, 'hello', 'U 0-d');
t_equal(s('U_empty_0d').data, '', 'U empty 0-d');
t_equal(s('U_1d').data, {'a'; 'bcd'; ''}, 'U (3,)');
t_equal(s('U_2d').data, {u(233), u([26085, 26412]); u([128512, 120]), 'plain'}, 'U (2, 2)');
t_equal(s('S_0d').data, 'abc', 'S 0-d');
t_equal(s('S_1d').data, {'ab'; 'c'}, 'S (2,)');
end

function t_errors(ctx) %#ok<INUSD>
good = scistack.encode_npy([1, 2, 3]);
t_error(@() scistack.decode_npy(good(1:end - 1)), 'scistack:corruptObject', 'data bytes');
bad = good;
bad(1) = 0;
t_error(@() scistack.decode_npy(bad), 'scistack:corruptObject', 'magic');
h = sprintf('{''descr'': ''|O'', ''fortran_order'': False, ''shape'': (1,), }\n');
obj = [uint8([147, double('NUMPY'), 1, 0, numel(h), 0]), uint8(h), zeros(1, 8, 'uint8')];
t_error(@() scistack.decode_npy(obj), 'scistack:unsupportedDtype', '|O');
end
