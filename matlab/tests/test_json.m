function cases = test_json(ctx) %#ok<INUSD>
%TEST_JSON Decoding json objects written by Python: scalars, tags, containers, children.
cases = {
    'integers: double up to 2^53, int64/uint64 beyond', @integers
    'floats: shortest repr text, -0.0, subnormal, nan/inf tags', @floats
    'strings: escapes, unicode, empty', @strings_
    'null, true, false', @literals
    'lists and tuples -> 1xN cell rows', @lists
    'dicts -> struct, or containers.Map for other keys and $dict', @dicts
    '$bytes -> uint8 column, $complex -> complex', @bytes_complex
    '$np scalars -> typed MATLAB scalars', @np_scalars
    'nested container with child arrays ($ref)', @nested
    'decode_json on text, refs left as oids without a reader', @direct
    'malformed JSON raises scistack:badJson', @malformed
    };
end

function v = J(ctx, name)
t_use(ctx);
r = JsonCase().load('subject', 1, 'session', name);
v = r.data;
end

function integers(ctx)
t_equal(J(ctx, 'int'), 42, 'int');
t_equal(J(ctx, 'neg_int'), -7, 'neg_int');
t_equal(J(ctx, 'zero_int'), 0, 'zero');
t_equal(J(ctx, 'int_2p53p1'), int64(9007199254740992) + int64(1), '2^53 + 1');
t_equal(J(ctx, 'int64_max'), intmax('int64'), 'int64 max');
t_equal(J(ctx, 'int64_min'), intmin('int64'), 'int64 min');
t_equal(J(ctx, 'uint64_max'), intmax('uint64'), 'uint64 max');
end

function floats(ctx)
t_equal(J(ctx, 'float'), 3.14159, 'float');
t_equal(J(ctx, 'float_int'), 2, 'float_int');
t_equal(J(ctx, 'float_tiny'), 5e-324, 'subnormal');
t_equal(J(ctx, 'float_big'), 1e300, 'big');
t_equal(J(ctx, 'float_exp'), 1e16, '1e+16');
t_equal(J(ctx, 'neg_zero'), -0, '-0.0');
t_assert(1 / J(ctx, 'neg_zero') == -Inf, '-0.0 keeps its sign');
t_equal(J(ctx, 'nan'), NaN, 'nan');
t_equal(J(ctx, 'inf'), Inf, 'inf');
t_equal(J(ctx, 'ninf'), -Inf, '-inf');
end

function strings_(ctx)
t_equal(J(ctx, 'str'), ['hello "world"', char(10), '\ tab', char(9), '/'], 'escapes');
t_equal(J(ctx, 'unicode'), scistack.internal.cp_to_char([233, 26085, 26412, 128512]), ...
    'unicode');
t_equal(J(ctx, 'empty_str'), '', 'empty');
end

function literals(ctx)
t_equal(J(ctx, 'none'), [], 'null');
t_equal(J(ctx, 'true'), true, 'true');
t_equal(J(ctx, 'false'), false, 'false');
end

function lists(ctx)
t_equal(J(ctx, 'list'), {1, 2.5, 'a', [], true}, 'list');
t_equal(J(ctx, 'empty_list'), {}, 'empty list');
t_equal(J(ctx, 'nested_list'), {{1, 2}, {3, {4.5}}}, 'nested list');
t_equal(J(ctx, 'tuple'), {1, 'x'}, 'tuple');
end

function dicts(ctx)
d = J(ctx, 'dict');
t_equal(d, struct('a', 1, 'b', {{1, 2}}, 'c', struct('d', 'e')), 'dict');
m = J(ctx, 'dict_badkeys');
t_assert(isa(m, 'containers.Map'), 'keys that are not field names give a containers.Map');
t_equal(sort(m.keys()), {'_under', 'my key', 'x.y'}, 'map keys');
t_equal(m('x.y'), 2, 'map value');
m = J(ctx, 'dollar_dict');
t_assert(isa(m, 'containers.Map'), '$dict gives a containers.Map');
t_equal(m('$a'), 1, '$a');
t_equal(m('b'), 2, 'b');
e = J(ctx, 'empty_dict');
t_assert(isstruct(e) && isempty(fieldnames(e)), 'empty dict -> struct()');
end

function bytes_complex(ctx)
t_equal(J(ctx, 'bytes_inline'), struct('b', uint8([0; 1; 255; 97; 98; 99])), 'bytes');
t_equal(J(ctx, 'complex'), complex(1.5, -2), 'complex');
end

function np_scalars(ctx)
s = J(ctx, 'np_scalars');
t_equal(s.f4, single(0.1), 'f4');
t_equal(s.i2, int16(-3), 'i2');
t_equal(s.u8, intmax('uint64'), 'u8');
t_equal(s.b, true, 'b1');
t_equal(s.c8, complex(single(1), single(2)), 'c8');
t_equal(s.dt, int64(18262), 'M8[D]');
t_equal(s.u, scistack.internal.cp_to_char([104, 233]), 'U');
t_equal(s.s, 'ab', 'S');
t_equal(s.f2, single(0.5), 'f2');
t_equal(s.f8nan, NaN, 'f8 nan');
t_equal(s.i8, intmin('int64'), 'i8');
end

function nested(ctx)
n = J(ctx, 'nested');
t_equal(n.arr, [0, 1, 2; 3, 4, 5], 'child 2-d array');
t_equal(n.list{1}, int32([1; 2; 3]), 'child int32 vector');
t_equal(n.list{2}.deep, reshape([0, 4, 2, 6, 1, 5, 3, 7], [2, 2, 2]), 'child 3-d array');
t_equal(n.name, 'x', 'name');
end

function direct(ctx) %#ok<INUSD>
v = scistack.decode_json('{"a":{"$ref":"00ff"},"b":[1,{"$tuple":[]}]}');
t_equal(v.a, '00ff', 'ref without reader');
t_equal(v.b, {1, {}}, 'list with empty tuple');
t_equal(scistack.decode_json(uint8('[1e+16,-0.0,1.5e-07]')), {1e16, -0, 1.5e-07}, 'bytes in');
end

function malformed(ctx) %#ok<INUSD>
t_error(@() scistack.decode_json('{"a":1'), 'scistack:badJson');
t_error(@() scistack.decode_json('[1,,2]'), 'scistack:badJson');
t_error(@() scistack.decode_json('{"$what":1}'), 'scistack:badJson', '$what');
t_error(@() scistack.decode_json('[1] x'), 'scistack:badJson');
end
