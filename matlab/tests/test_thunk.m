function cases = test_thunk(ctx) %#ok<INUSD>
%TEST_THUNK scistack.Thunk records lineage and uses the call cache as for_each does: one
%   `scistack matlab-thunk` per call (plus `matlab-thunk-commit` when it runs), keys shared
%   with for_each of the same .m file, the result saved with its call, `scistack why` and
%   `status` judging the .m file. Runs on a fresh project. (A comment edit keeping the key,
%   a chained result's input and other constants: tests/matlab/test_matlab_thunk.py.)
cases = {
    'a call runs once; a repeat is cached; the saved result carries the call', @cached
    'shares keys with for_each; a code edit re-runs; why and status say so', @edits
    'cells of records, several outputs, a chained result; bad functions refused', @shapes
    };
end

function root = fresh(ctx)
root = fullfile(ctx.fixture, 'thunk');
if exist(root, 'dir')
    rmdir(root, 's');
end
scistack.configure_database(fullfile(root, 'gait.duckdb'), {'subject', 'session'});
RawEMG().save((1:4)', 'subject', 1, 'session', 'pre');
RawEMG().save((5:8)', 'subject', 1, 'session', 'post');
end

function root = use(ctx)
% the project the first case made (each case writes other variables)
root = fullfile(ctx.fixture, 'thunk');
scistack.configure_database(fullfile(root, 'gait.duckdb'), {'subject', 'session'});
end

function cached(ctx)
root = fresh(ctx);
global SCISTACK_TEST_CALLS
SCISTACK_TEST_CALLS = 0;
raw = RawEMG().load('subject', 1, 'session', 'pre');
f = scistack.Thunk(@bandpass);
y = f(raw, 20);
t_equal(y.data, (1:4)' * 2 + 20, 'the function''s result');
t_equal(y.cached, false, 'ran');
t_assert(scistack.internal.is_oid(y.call), 'a call record');
old = getenv('SCISTACK_CLI');
setenv('SCISTACK_CLI', 'false');   % a repeat in this session starts no Python
y2 = f(raw, 20);
setenv('SCISTACK_CLI', old);
t_equal(SCISTACK_TEST_CALLS, 1, 'bandpass ran once');
t_equal({y2.cached, y2.oid, y2.call}, {true, y.oid, y.call}, 'the cached result');
t_equal(y2.data, y.data, 'cached data');
FilteredEMG().save(y2, 'subject', 1, 'session', 'pre');
p = FilteredEMG().provenance('subject', 1, 'session', 'pre');
t_equal(p('function'), 'bandpass', 'saved with its call');
constants = p('constants');
t_equal(constants.low_hz, 20, 'its constant');
inputs = p('inputs');
t_equal({inputs{1}.name, inputs{1}.var}, {'signal', 'RawEMG'}, 'its input, traced to its variable');
q = dir(fullfile(root, '.scistack', 'staging'));
t_equal(sum(~ismember({q.name}, {'.', '..'})), 0, 'no staging folder left');
end

function edits(ctx)
root = use(ctx);
d = tempname();
mkdir(d);
addpath(d);
cleaner = onCleanup(@() rmpath(d));
write_fn(d, 'thunk_step', {'function y = thunk_step(signal, k)', 'y = signal * k;', 'end'});
r = scistack.for_each(@thunk_step, struct('signal', RawEMG(), 'k', 3), {Edited()}, ...
    'subject', 1, 'session', {'pre', 'post'});
t_equal(r.counts.ran, 2, 'for_each ran');
step = scistack.Thunk(@thunk_step);
y = step(RawEMG().load('subject', 1, 'session', 'post'), 3);
t_equal(y.cached, true, 'a for_each result is a Thunk cache hit');
t_equal(y.oid, Edited().load('subject', 1, 'session', 'post').oid, 'the same value');
write_fn(d, 'thunk_step', {'function y = thunk_step(signal, k)', 'y = signal * k + 1;', 'end'});
[~, out] = scistack.internal.run_cli(sprintf('why Edited --subject 1 --session post'), ...
    '', root);
t_assert(~isempty(strfind(out, 'is stale')), ['why: stale after the edit: ', out]);
t_assert(~isempty(strfind(out, '+y = signal * k + 1;')), ['why shows the diff: ', out]);
y = step(RawEMG().load('subject', 1, 'session', 'post'), 3);
t_equal({y.cached, y.data}, {false, (5:8)' * 3 + 1}, 'an edit re-runs');
Edited().save(y, 'subject', 1, 'session', 'post');
scistack.flush();
[~, out] = scistack.internal.run_cli('status', '', root);
t_assert(~isempty(regexp(out, 'Edited: 1 done, 1 stale', 'once')), ['status: ', out]);
end

function shapes(ctx)
use(ctx);
both = RawEMG().load('subject', 1);   % a cell of two records
count = scistack.Thunk(@count_all);
n = count(both);
t_equal(n.data, 2, 'a cell of records arrives as a cell of data');
t_equal(count(both).cached, true, 'and is keyed by its oids');
t_equal(count(RawEMG().load_all('subject', 1)).cached, true, 'load_all''s struct array too');
two = scistack.Thunk(@ratio);
base = RawEMG().load('subject', 1, 'session', 'post');
[r, k] = two(RawEMG().load('subject', 1, 'session', 'pre'), base, int64(2), [1 2], ...
    struct('shift', 0));
t_equal(r.data, (1:4)' ./ (5:8)' * 2 + 1, 'first output');
t_equal(k.data, int32(4), 'second output');
t_equal(r.call, k.call, 'one call');
twice = scistack.Thunk(@bandpass);
z = twice(r, 0);   % an earlier result as input
t_equal(z.data, r.data * 2, 'chained');
t_error(@() scistack.Thunk(@(x) x + 1), 'scistack:badArgument', 'anonymous');
t_error(@() scistack.Thunk(3), 'scistack:badArgument');
t_error(@() scistack.Thunk(@bandpass, 'nope', 1), 'scistack:badArgument', 'helpers');
end

function write_fn(d, name, lines)
fid = fopen(fullfile(d, [name, '.m']), 'w');
fprintf(fid, '%s\n', lines{:});
fclose(fid);
clear(name);      % Octave and MATLAB re-read an edited file once it is cleared
end
