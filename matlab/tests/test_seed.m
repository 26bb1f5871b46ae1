function cases = test_seed(ctx) %#ok<INUSD>
%TEST_SEED The README's seed example, in the syntax Octave accepts (scidb aliases, a
%   third configure_database argument, Thunk on a loaded record (recorded: test_thunk), for_each
%   twice: cached).
cases = {
    'the seed example runs as written (Octave syntax)', @seed
    'load by lineage parameter, list_versions, version, provenance, delete', @python_api
    'Thunk refuses a non-function', @thunk_bad
    };
end

function seed(ctx)
root = fullfile(ctx.fixture, 'seed');
if exist(root, 'dir')
    rmdir(root, 's');
end
scidb.configure_database(fullfile(root, 'my_experiment.duckdb'), {'subject', 'session'}, ...
    'pipeline.db');
x = randn(1000, 1);
SeedRaw().save(x, 'subject', 1, 'session', 'baseline');
SeedRaw().save(randn(1000, 1), 'subject', 2, 'session', 'post');
raw = SeedRaw().load('subject', 1, 'session', 'baseline');
filter_fn = scidb.Thunk(@bandpass_filter);
filtered = filter_fn(raw, 20, 450);
t_equal(filtered.data, x * 2 + 20 / 450, 'Thunk passes the record''s data');
t_assert(scistack.internal.is_oid(filtered.call), 'and records the call');
r1 = scidb.for_each(@bandpass_filter, struct('signal', SeedRaw()), {FilteredEMG()}, ...
    'subject', [1 2 3 4 5], 'session', {'baseline', 'post'});
t_equal(r1.counts.ran, 2, 'two stored inputs ran');
r2 = scidb.for_each(@bandpass_filter, struct('signal', SeedRaw()), {FilteredEMG()}, ...
    'subject', [1 2 3 4 5], 'session', {'baseline', 'post'});
t_equal(r2.counts.cached, 2, 'second run is cached');
f = FilteredEMG().load('subject', 1, 'session', 'baseline');
t_equal(f.data, x * 2 + 20 / 450, 'for_each saved the result');
end

function thunk_bad(ctx) %#ok<INUSD>
t_error(@() scistack.Thunk(3), 'scistack:badArgument');
end

function python_api(ctx)
root = fullfile(ctx.fixture, 'seed');   % made by seed above
scidb.configure_database(fullfile(root, 'my_experiment.duckdb'), {'subject', 'session'});
x = SeedRaw().load('subject', 1, 'session', 'baseline');
scistack.for_each(@bandpass_filter, struct('signal', SeedRaw(), 'low_hz', 30), ...
    {FilteredEMG()}, 'subject', 1, 'session', 'baseline');
f = FilteredEMG().load('low_hz', 30);
t_equal(f.data, x.data * 2 + 30 / 450, 'found by its lineage constant');
t_equal(f.version, 2, 'the new version');
t_error(@() FilteredEMG().load('low_hz', 99), 'scistack:notFound');
vs = FilteredEMG().list_versions('subject', 1, 'session', 'baseline');
t_equal(numel(vs), 2, 'two versions');
t_equal([vs{1}.version, vs{2}.version], [2, 1], 'newest first');
old = FilteredEMG().load('subject', 1, 'session', 'baseline', 'version', 1);
t_equal(old.data, x.data * 2 + 20 / 450, 'version 1 kept');
p = FilteredEMG().provenance('subject', 1, 'session', 'baseline');
t_equal(p('function'), 'bandpass_filter', 'function');   % a Map: function is a keyword
constants = p('constants');
t_equal(constants.low_hz, 30, 'constant');
inputs = p('inputs');
t_equal(inputs{1}.var, 'SeedRaw', 'input');
t_assert(isempty(SeedRaw().provenance('subject', 1, 'session', 'baseline')), 'raw: none');
FilteredEMG().delete('subject', 2, 'session', 'post');
t_error(@() FilteredEMG().load('subject', 2, 'session', 'post'), 'scistack:notFound');
% an empty value wrote no option: 'note', [] deleted (and listed) every variant there, and
% 'session', {} every session
SeedRaw().save(x.data + 1, 'subject', 1, 'session', 'baseline', 'note', 'recal');
t_error(@() SeedRaw().delete('subject', 1, 'session', 'baseline', 'note', []), ...
    'scistack:badArgument', '''version'', N');
t_error(@() SeedRaw().list_versions('subject', 1, 'session', 'baseline', 'note', []), ...
    'scistack:badArgument');
t_error(@() SeedRaw().delete('subject', 1, 'session', {}), 'scistack:badArgument', 'empty list');
r = SeedRaw().load('subject', 1, 'session', 'baseline', 'note', 'recal');
t_equal(r.data, x.data + 1, 'the recal variant is still there');
t_equal(SeedRaw().load('subject', 1, 'session', 'baseline', 'note', []).data, x.data, 'and the other');
end
