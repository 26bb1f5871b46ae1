function cases = test_chunked(ctx) %#ok<INUSD>
%TEST_CHUNKED Chunked arrays (docs/format.md 1.6) saved by Python: loaded whole through
%   BaseVariable.load, and a sub-block read with scistack.read_chunked from only the chunks
%   it touches. The project is built by pyproject.py (chunks loose, packed and zstd).
cases = {
    'a chunked int16 matrix loads whole (loose chunks, edge chunk padded)', @whole_2d
    'a sub-block reads only the chunks it touches', @block_2d
    'scattered indices read only their chunks, not the span between them', @scattered
    'a 3-D float64 array with packed chunks: whole and a block', @three_d
    'a 1-D array loads as a column', @one_d
    'byte-shuffled chunks load whole and by block', @shuffled_chunks
    'chunked datetime64 and timedelta64 arrays load as int64 counts of their unit', @time_arrays
    'a chunked DataFrame loads whole as a struct of columns, its row groups in order', @chunked_table
    };
end

function use_py(ctx)
scistack.configure_database(fullfile(ctx.pyproject, 'gait.duckdb'), {'subject', 'session'});
end

function s = scrambled(n)
s = mod((0:n - 1) * 2654435761, 2^32);
end

function x = values_2d()
x = int16(reshape(mod(scrambled(6000), 30000) - 15000, 6, 1000)');
end

function whole_2d(ctx)
use_py(ctx);
r = ChunkedVar().load('subject', 1);
t_equal(r.data, values_2d(), 'whole int16 matrix');
[~, info] = scistack.read_object(ctx.pyproject, r.oid, '', [], true);
t_equal(info.kind, 'chunked', 'stored as a chunked manifest');
end

function block_2d(ctx)
use_py(ctx);
r = ChunkedVar().load('subject', 1);
x = values_2d();
[b, info] = scistack.read_chunked(ctx.pyproject, r.oid, {100:230, 4});
t_equal(b, x(100:230, 4), 'rows 100..230 of column 4');
t_equal(info.chunks_read, 3, 'chunks of 64 rows: 2, 3 and 4 only');
t_equal(info.chunk_shape, [64, 6], 'chunk shape');
[b, info] = scistack.read_chunked(ctx.pyproject, r.oid, {[1000, 990, 3], ':'});
t_equal(b, x([1000, 990, 3], :), 'unordered rows, every column');
t_equal(info.chunks_read, 2, 'rows 3 and 990..1000: chunks 1 and 16, not the 14 between');
end

function scattered(ctx)
use_py(ctx);
r = ChunkedVar().load('subject', 1);
x = values_2d();
[b, info] = scistack.read_chunked(ctx.pyproject, r.oid, {[1, 1000], 2});
t_equal(b, x([1; 1000], 2), 'the first and the last row of column 2');
t_equal(size(b), [2, 1], 'a 2x1 block, not the span');
t_equal(info.chunks_read, 2, 'the first and the last of 16 chunks of 64 rows');
[b, info] = scistack.read_chunked(ctx.pyproject, r.oid, {[1000, 1, 1000, 65], [6, 1, 6]});
t_equal(b, x([1000, 1, 1000, 65], [6, 1, 6]), 'repeated, unsorted rows and columns');
t_equal(info.chunks_read, 3, 'chunks 1, 2 and 16 (each read once)');
x3 = permute(reshape(scrambled(1200) / 7, [2, 20, 30]), [3, 2, 1]);
r = ChunkedVar().load('subject', 2);
[b, info] = scistack.read_chunked(ctx.pyproject, r.oid, {[30, 1, 1, 29, 6], [20, 3, 20], [2, 1]});
t_equal(b, x3([30, 1, 1, 29, 6], [20, 3, 20], [2, 1]), '3-D, repeated and unsorted');
t_equal(info.chunks_read, 3, 'chunks of 2 rows: rows 1-2, 5-6 and 29-30 of 15 chunks');
r = ChunkedVar().load('subject', 3);
[b, info] = scistack.read_chunked(ctx.pyproject, r.oid, {[3000, 1, 3000]});
t_equal(b, mod([2999; 0; 2999], 11), '1-D: the last, the first, the last again, as a column');
t_equal(info.chunks_read, 2, 'the first and the last of 24 chunks');
end

function three_d(ctx)
use_py(ctx);
x = permute(reshape(scrambled(1200) / 7, [2, 20, 30]), [3, 2, 1]);
r = ChunkedVar().load('subject', 2);
t_equal(r.data, x, 'whole 30x20x2 array');
[b, info] = scistack.read_chunked(ctx.pyproject, r.oid, {5:7, [], 2});
t_equal(b, x(5:7, :, 2), 'block (5:7, :, 2)');
t_equal(info.chunks_read, 2, 'chunks of 2 rows: rows 5-6 and 7-8');
end

function one_d(ctx)
use_py(ctx);
r = ChunkedVar().load('subject', 3);
t_equal(r.data, mod(0:2999, 11)', '1-D -> column');
t_equal(scistack.read_chunked(ctx.pyproject, r.oid, {2990:3000}), mod(2989:2999, 11)', 'tail');
end

function shuffled_chunks(ctx)
use_py(ctx);
x = int16(mod(floor((0:16383)' / 100) + (0:63), 300));
r = ChunkedVar().load('subject', 4);
t_equal(r.data, x, 'whole 16384x64 int16 array from two shuffled chunks');
[b, info] = scistack.read_chunked(ctx.pyproject, r.oid, {8190:8195, 64});
t_equal(b, x(8190:8195, 64), 'rows 8190..8195 of column 64 (both chunks)');
t_equal(info.chunks_read, 2, 'two chunks of 8192 rows');
end

function time_arrays(ctx)
use_py(ctx);
stamps = int64(1700000000000000) + int64(0:599)' * 1000;
stamps(11) = intmin('int64');
r = ChunkedVar().load('subject', 5);
t_equal(r.data, stamps, 'microseconds since 1970, NaT as intmin');
[b, info] = scistack.read_chunked(ctx.pyproject, r.oid, {5:140});
t_equal(b, stamps(5:140), 'a block across two chunks');
t_equal(info.unit, 'us', 'the unit');
t_equal(info.chunks_read, 2, 'chunks of 128 stamps');
r = ChunkedVar().load('subject', 6);
durations = reshape(int64(0:1399), 2, 700)';
t_equal(r.data, durations, '700x2 durations');
[b, info] = scistack.read_chunked(ctx.pyproject, r.oid, {690:700, 2});
t_equal(b, durations(690:700, 2), 'the tail of column 2');
t_equal(info.unit, '10ms', 'a unit with a scale factor');
end

function chunked_table(ctx)
use_py(ctx);
r = ChunkedTable().load('subject', 1);
[~, info] = scistack.read_object(ctx.pyproject, r.oid, '', [], true);
t_equal(info.kind, 'chunked', 'stored as a chunked manifest');
[x, t] = scistack.read_chunked(ctx.pyproject, r.oid);
t_assert(t.chunks_read > 2, 'several row groups (%d)', t.chunks_read);
t_equal(r.data, x, 'load and read_chunked agree');
t_equal(fieldnames(x)', {'count', 'force', 'label', 'side'}, 'columns in order');
want = (0:299)';
t_assert(isequaln(x.count, [want(1:250); NaN; want(252:300)]), 'count: the missing one is NaN');
t_equal(x.force, (0:299)' / 4, 'force');
t_equal(x.label{1}, 't0', 'label');
t_equal(x.label{300}, 't299', 'label');
t_equal(x.side(1:3), {'left'; 'right'; 'left'}, 'categories as text');
t_error(@() scistack.read_chunked(ctx.pyproject, r.oid, {1:10, 1}), 'scistack:badIndex', 'whole');
end
