function cases = test_foreach(ctx) %#ok<INUSD>
%TEST_FOREACH scistack.for_each in MATLAB: one `scistack matlab-plan` and one
%   `scistack matlab-commit` per run (the real Python CLI, SCISTACK_CLI), caching by the
%   normalised .m text, Fixed inputs, constants, several outputs, aggregates, failures and
%   bad input. Runs on the project Python built (pyproject.py build); afterwards the pytest
%   wrapper runs a Python step on FilteredEMG and checks both steps' lineage from Python.
cases = {
    'runs every combination and saves with lineage; a rerun is cached, no call', @runs_then_cached
    'editing the code re-runs, a comment or blank line does not, helpers count', @edits
    'Fixed pins keys; several outputs; int, array and struct constants', @fixed_and_constants
    'aggregates arrive as a cell; a struct output keeps its array as a child', @aggregate
    'Split saves a returned map''s values at finer addresses; a rerun is cached', @split_output
    'missing inputs are reported per combination, not run', @missing
    'failures: continue records them and goes on, raise stops and raises', @failures
    'dry_run plans without running or recording', @dry_run
    'bad input -> clear errors, no staging folder left behind', @bad_input
    'the same values at two addresses: re-runs are cached at both', @same_values
    'a version key in Fixed picks a variant; [] the one saved without it', @fixed_variant
    };
end

function use_py(ctx)
scistack.configure_database(fullfile(ctx.pyproject, 'gait.duckdb'), {'subject', 'session'});
end

function x = raw_emg(subject, session)
offsets = struct('pre', 1, 'post', 2, 'baseline', 3);
x = (0:7)' * subject + offsets.(session);
end

function runs_then_cached(ctx)
use_py(ctx);
global SCISTACK_TEST_CALLS
SCISTACK_TEST_CALLS = 0;
inputs = struct('signal', RawEMG(), 'low_hz', 20);
r = scistack.for_each(@bandpass, inputs, {FilteredEMG()}, 'subject', [1 2 3], ...
    'session', {'pre', 'post'});
t_equal(r.counts.ran, 6, 'ran');
t_equal(r.calls, 6, 'calls');
t_equal(SCISTACK_TEST_CALLS, 6, 'bandpass calls');
t_equal({r.items.status}, repmat({'ran'}, 1, 6), 'statuses');
t_equal(r.items(4).combo, struct('session', 'post', 'subject', 2), 'order: subject, then session');
f = FilteredEMG().load('subject', 2, 'session', 'post');
t_equal(f.data, raw_emg(2, 'post') * 2 + 20, 'value');
t_equal(r.items(4).outputs{1}, f.oid, 'the report names the saved oid');
t_assert(scistack.internal.is_oid(r.run_id) || numel(r.run_id) == 32, 'run id');
again = scistack.for_each(@bandpass, inputs, {FilteredEMG()}, 'subject', [1 2 3], ...
    'session', {'pre', 'post'});
t_equal(again.counts.cached, 6, 'cached');
t_equal(again.counts.ran, 0, 'ran again');
t_equal(again.calls, 0, 'no call');
t_equal(SCISTACK_TEST_CALLS, 6, 'bandpass was not called again');
t_equal(again.items(4).outputs{1}, f.oid, 'cached outputs');
f2 = FilteredEMG().load('subject', 2, 'session', 'post');
t_equal(f2.version, 1, 'no new version');
assert_no_staging(ctx);
end

function edits(ctx)
use_py(ctx);
d = tempname();
mkdir(d);
addpath(d);
cleaner = onCleanup(@() rmpath(d));
write_fn(d, 'edited_step', {'function y = edited_step(x, k)', '% version one', ...
    'y = edited_helper(x) * k;', 'end'});
write_fn(d, 'edited_helper', {'function y = edited_helper(x)', 'y = x;', 'end'});
run = @() scistack.for_each(@edited_step, struct('x', RawEMG(), 'k', 2), {Edited()}, ...
    'subject', 1, 'session', {'pre', 'post'}, 'helpers', {@edited_helper});
r = run();
t_equal(r.counts.ran, 2, 'first run');
write_fn(d, 'edited_step', {'function y = edited_step(x, k)', '% version two: a comment', ...
    '', '%{', 'a block comment', '%}', 'y = edited_helper(x) * k;   % same code   ', 'end'});
r = run();
t_equal(r.counts.cached, 2, 'comments, blank lines and trailing spaces do not count');
write_fn(d, 'edited_step', {'function y = edited_step(x, k)', ...
    'y = edited_helper(x) * k + 1;', 'end'});
r = run();
t_equal(r.counts.ran, 2, 'a code edit re-runs');
e = Edited().load('subject', 1, 'session', 'pre');
t_equal(e.data, raw_emg(1, 'pre') * 2 + 1, 'the new code ran');
t_equal(e.version, 2, 'a new version');
write_fn(d, 'edited_helper', {'function y = edited_helper(x)', 'y = x + 0;', 'end'});
r = run();
t_equal(r.counts.ran, 2, 'a helper edit re-runs');
r = run();
t_equal(r.counts.cached, 2, 'and is then cached');
end

function write_fn(d, name, lines)
fid = fopen(fullfile(d, [name, '.m']), 'w');
fprintf(fid, '%s\n', lines{:});
fclose(fid);
clear(name);      % Octave and MATLAB re-read an edited file once it is cleared
end

function fixed_and_constants(ctx)
use_py(ctx);
inputs = struct('signal', RawEMG(), 'base', scistack.Fixed(RawEMG(), 'session', 'baseline'), ...
    'scale', int64(3), 'offsets', [1, 2, 3], 'opts', struct('shift', 0.5, 'name', 'x'));
r = scistack.for_each(@ratio, inputs, {Ratio(), NCount()}, 'subject', [1 2], ...
    'session', {'pre', 'post'});
t_equal(r.counts.ran, 4, 'ran');
t_equal(numel(r.items(1).outputs), 2, 'two outputs per combination');
x = Ratio().load('subject', 2, 'session', 'pre');
want = raw_emg(2, 'pre') ./ raw_emg(2, 'baseline') * 3 + 1 + 0.5;
t_equal(x.data, want, 'ratio to the pinned baseline');
n = NCount().load('subject', 2, 'session', 'pre');
t_equal(n.data, 8, 'an int32 output comes back as a number');
again = scistack.for_each(@ratio, inputs, {Ratio(), NCount()}, 'subject', [1 2], ...
    'session', {'pre', 'post'});
t_equal(again.counts.cached, 4, 'cached');
other = inputs;
other.offsets = [2, 2, 3];
changed = scistack.for_each(@ratio, other, {Ratio(), NCount()}, 'subject', 1, ...
    'session', 'pre');
t_equal(changed.counts.ran, 1, 'another constant is another call');
t_error(@() scistack.Fixed('RawEMG', 'session', 'x'), 'scistack:badArgument', 'variable');
t_error(@() scistack.Fixed(RawEMG()), 'scistack:badArgument', 'pairs');
end

function aggregate(ctx)
use_py(ctx);
r = scistack.for_each(@count_all, struct('signals', RawEMG()), {NSessions()}, ...
    'subject', [1 2]);
t_equal(r.counts.ran, 2, 'ran');
n = NSessions().load('subject', 2);
t_equal(n.data, 3, 'three sessions arrived in a cell');
t_equal(n.metadata, struct('subject', 2), 'saved at the subject level');
r = scistack.for_each(@summarise, struct('signal', RawEMG()), {PeakSummary()}, ...
    'subject', [1 2], 'session', 'post');
t_equal(r.counts.ran, 2, 'a struct output');
x = PeakSummary().load('subject', 2, 'session', 'post');
t_equal(x.data, struct('head', [2, 4, 6], 'label', 'emg', 'peak', 16), ...
    'struct with a child array');
end

function split_output(ctx)
use_py(ctx);
outputs = {scistack.Split(Extreme(), 'session'), NSessions()};
r = scistack.for_each(@low_and_high, struct('signals', RawEMG(), 'mode', 'ok'), outputs, ...
    'subject', [1 2]);
t_equal(r.counts.ran, 2, 'ran');
high = Extreme().load('subject', 2, 'session', 'high');
t_equal(high.data, 7 * 2 + 3, 'the highest sample, at session=high');
t_equal(high.metadata, struct('subject', 2, 'session', 'high'), 'saved at the finer address');
t_equal(Extreme().load('subject', 1, 'session', 'low').data, 1, 'the lowest');
t_equal(NSessions().load('subject', 2).data, 3, 'a plain output beside it');
again = scistack.for_each(@low_and_high, struct('signals', RawEMG(), 'mode', 'ok'), outputs, ...
    'subject', [1 2]);
t_equal(again.counts.cached, 2, 'cached');
t_equal(Extreme().load('subject', 2, 'session', 'high').version, 1, 'no new version');
as_struct = scistack.for_each(@low_and_high, struct('signals', RawEMG(), 'mode', 'struct'), ...
    outputs, 'subject', 2);
t_equal(as_struct.counts.ran, 1, 'another constant: runs');
t_equal(Extreme().load('subject', 2, 'session', 'high').data, 17, 'a struct''s fields are the keys');
bad = scistack.for_each(@low_and_high, struct('signals', RawEMG(), 'mode', 'wrong'), outputs, ...
    'subject', 1);
t_equal(bad.counts.failed, 1, 'a number where a map is due fails its combination');
t_assert(~isempty(strfind(bad.items(1).error, 'containers.Map')), bad.items(1).error);
err = t_error(@() scistack.for_each(@low_and_high, struct('signals', RawEMG(), 'mode', 'ok'), ...
    outputs, 'subject', 1, 'session', 'pre'), 'scistack:planFailed');
t_assert(~isempty(strfind(err.message, 'iterates session= too')), err.message);
assert_no_staging(ctx);
end

function missing(ctx)
use_py(ctx);
r = scistack.for_each(@bandpass, struct('signal', RawEMG(), 'low_hz', 5), {Scratch()}, ...
    'subject', [3 4], 'session', 'pre');
t_equal(r.counts.ran, 1, 'subject 3 ran');
t_equal(r.counts.missing, 1, 'subject 4 is missing');
t_equal(r.items(2).status, 'missing', 'status');
t_assert(~isempty(strfind(r.items(2).missing{1}, 'RawEMG')) && ...
    ~isempty(strfind(r.items(2).missing{1}, 'subject=4')) && ...
    ~isempty(strfind(r.items(2).missing{1}, 'signal')), ...
    'names the variable, address and input: %s', r.items(2).missing{1});
t_assert(~isempty(strfind(r.summary, 'missing at subject=4')), 'summary: %s', r.summary);
t_error(@() Scratch().load('subject', 4, 'session', 'pre'), 'scistack:notFound');
end

function failures(ctx)
use_py(ctx);
r = scistack.for_each(@fails_on, struct('signal', RawEMG()), {Failing()}, ...
    'subject', [1 2 3], 'session', 'pre');
t_equal({r.items.status}, {'ran', 'failed', 'failed'}, 'statuses');
t_assert(~isempty(strfind(r.items(2).error, 'test:tooBig')), 'error: %s', r.items(2).error);
t_assert(~isempty(strfind(r.summary, 'failed subject=2')), 'summary: %s', r.summary);
t_equal(Failing().load('subject', 1, 'session', 'pre').data, raw_emg(1, 'pre'), 'saved');
err = t_error(@() scistack.for_each(@fails_on, struct('signal', RawEMG()), {Failing()}, ...
    'subject', [2 3], 'session', 'post', 'on_error', 'raise'), 'scistack:forEachFailed', ...
    'subject=2', 'test:tooBig');
t_assert(isempty(strfind(err.message, 'subject=3')), 'stopped at the first: %s', err.message);
r = scistack.for_each(@bad_output, struct('signal', RawEMG()), {BadOut()}, 'subject', 1, ...
    'session', 'pre');
t_equal(r.items(1).status, 'failed', 'an output that cannot be stored fails its combination');
t_assert(~isempty(strfind(r.items(1).error, 'scistack:unsupportedValue')), '%s', r.items(1).error);
r = scistack.for_each(@table_mean, struct('frame', TableVar(), 'k', 10), {Scratch()}, ...
    'subject', 1, 'session', 'pre');
t_equal(r.items(1).status, 'ran', 'a DataFrame input arrives as a struct of columns');
t_equal(Scratch().load('subject', 1, 'session', 'pre').data, 15, 'mean of x [1; 2] times 10');
r = scistack.for_each(@loads_inside, struct('signal', RawEMG()), {Scratch()}, 'subject', 1, ...
    'session', 'pre');
t_equal(r.items(1).status, 'failed', 'a variable the function loads itself is refused');
t_assert(~isempty(strfind(r.items(1).error, 'scistack:loadInsideCachedCall')), '%s', r.items(1).error);
lastwarn('');
r = scistack.for_each(@saves_inside, struct('signal', RawEMG()), {Scratch()}, 'subject', 2, ...
    'session', 'pre');
[msg, id] = lastwarn();
t_equal(r.items(1).status, 'ran', 'a function that saves a variable itself still runs');
t_equal(id, 'scistack:saveInsideCachedCall', 'and warns that a cache hit skips that save');
t_assert(~isempty(strfind(msg, 'FilteredEMG().save inside saves_inside')), '%s', msg);
r = scistack.for_each(@runs_a_step_inside, struct('signal', RawEMG()), {Scratch()}, ...
    'subject', 1, 'session', 'pre');
t_equal(r.items(1).status, 'failed', 'a for_each the function runs itself is refused');
t_assert(~isempty(strfind(r.items(1).error, 'scistack:forEachInsideCachedCall')), '%s', r.items(1).error);
t_equal(RawEMG().load('subject', 1, 'session', 'pre').data, raw_emg(1, 'pre'), 'a load outside a call');
assert_no_staging(ctx);
end

function dry_run(ctx)
use_py(ctx);
global SCISTACK_TEST_CALLS
before = SCISTACK_TEST_CALLS;
r = scistack.for_each(@bandpass, struct('signal', RawEMG(), 'low_hz', 99), {Scratch()}, ...
    'subject', [], 'session', 'post', 'dry_run', true);
t_equal(r.counts.would_run, 3, '[] iterates every stored subject');
t_equal(SCISTACK_TEST_CALLS, before, 'nothing ran');
t_assert(strncmp(r.summary, '[dry run]', 9), 'summary: %s', r.summary);
t_error(@() Scratch().load('subject', 1, 'session', 'post'), 'scistack:notFound');
end

function bad_input(ctx)
use_py(ctx);
ok = struct('signal', RawEMG(), 'low_hz', 20);
t_error(@() scistack.for_each(@bandpass, ok, {Scratch()}, 'trial', 1), ...
    'scistack:badArgument', '"trial"', 'schema');
t_error(@() scistack.for_each(@bandpass, struct('sig', RawEMG()), {Scratch()}, ...
    'subject', 1), 'scistack:planFailed', 'no parameter', 'sig');
t_error(@() scistack.for_each(@bandpass, struct('signal', scistack.Fixed(RawEMG(), ...
    'trial', 2)), {Scratch()}, 'subject', 1), 'scistack:planFailed', 'trial', 'schema keys');
t_error(@() scistack.for_each(@(x) x, ok, {Scratch()}, 'subject', 1), ...
    'scistack:badArgument', 'anonymous');
t_error(@() scistack.for_each(@no_such_function_here, ok, {Scratch()}, 'subject', 1), ...
    'scistack:badArgument', 'no_such_function_here');
t_error(@() scistack.for_each(@bandpass, ok, {'Scratch'}, 'subject', 1), ...
    'scistack:badArgument', 'OUTPUTS');
t_error(@() scistack.for_each(@bandpass, struct('signal', RawEMG(), 'low_hz', @sin), ...
    {Scratch()}, 'subject', 1), 'scistack:unsupportedValue', 'low_hz');
t_error(@() scistack.for_each(@bandpass, ok, {Scratch()}, 'subject', 1, 'on_error', 'x'), ...
    'scistack:badArgument', 'on_error');
old = getenv('SCISTACK_CLI');
restore = onCleanup(@() setenv('SCISTACK_CLI', old)); %#ok<NASGU>
setenv('SCISTACK_CLI', 'false');
t_error(@() scistack.for_each(@bandpass, ok, {Scratch()}, 'subject', 1), ...
    'scistack:planFailed', 'status 1');
setenv('SCISTACK_CLI', old);
assert_no_staging(ctx);
end

function assert_no_staging(ctx)
d = dir(fullfile(ctx.pyproject, '.scistack', 'staging'));
names = setdiff({d.name}, {'.', '..'});
t_assert(isempty(names), 'staging folders left behind: %s', strjoin(names, ', '));
end

function same_values(ctx)
% One call key at two addresses: the cache entry names one address's record, and the other
% had run again at every re-run (then the first, in turn). Within one run it is computed
% once: the second address is served the first's result (it had been computed twice).
root = fullfile(ctx.fixture, 'same_values');
if exist(root, 'dir')
    rmdir(root, 's');
end
scistack.configure_database(fullfile(root, 'gait.duckdb'), {'subject', 'session'});
SavedValue().save((1:5)', 'subject', 1, 'session', 'pre');
SavedValue().save((1:5)', 'subject', 1, 'session', 'post');
global SCISTACK_TEST_CALLS
SCISTACK_TEST_CALLS = 0;
for k = 1:3
    r = scistack.for_each(@bandpass, struct('signal', SavedValue(), 'low_hz', 1), ...
        {Scratch()}, 'subject', 1, 'session', {'pre', 'post'});
    if k == 1
        t_equal({r.items.status}, {'ran', 'cached'}, 'the first run computes it once');
        t_equal(r.calls, 1, 'one call');
        t_equal(r.items(2).outputs, r.items(1).outputs, 'the second address is served it');
    end
end
t_equal(r.counts.cached, 2, 'both cached on the third run');
t_equal(SCISTACK_TEST_CALLS, 1, 'bandpass ran once, on the first run');
p = Scratch().provenance('subject', 1, 'session', 'post');
inputs = p('inputs');
signal = inputs{strcmp(cellfun(@(x) x.name, inputs, 'UniformOutput', false), 'signal')};
t_equal(signal.addr.session, 'post', 'each address names its own input');
end

function fixed_variant(ctx)
use_py(ctx);
Variant().save([1; 2], 'subject', 1, 'session', 'pre');
Variant().save([10; 20], 'subject', 1, 'session', 'pre', 'note', 'recal');
Variant().save([5; 6], 'subject', 2, 'session', 'pre');
% ambiguous at subject 1 only: that combination fails (as in Python), subject 2 runs
r = scistack.for_each(@bandpass, struct('signal', Variant(), 'low_hz', 1), ...
    {FromVariant()}, 'subject', [1, 2], 'session', 'pre');
t_equal([r.counts.failed, r.counts.ran], [1, 1], 'the ambiguous combination fails alone');
t_assert(~isempty(strfind(r.summary, 'failed subject=1, session=''pre'': input signal')), ...
    'the summary names the failed combination');
t_assert(~isempty(strfind(r.items(1).error, 'scistack.Fixed(Variant(), ''<version key>''')), ...
    'its error says how to pick a variant');
t_error(@() scistack.for_each(@bandpass, struct('signal', Variant(), 'low_hz', 1), ...
    {FromVariant()}, 'subject', [1, 2], 'session', 'pre', 'on_error', 'raise'), ...
    'scistack:forEachFailed', 'input signal');
r = scistack.for_each(@bandpass, struct('signal', scistack.Fixed(Variant(), 'note', 'recal'), ...
    'low_hz', 1), {FromVariant()}, 'subject', 1, 'session', 'pre');
t_equal(r.counts.ran, 1, 'ran on the recal variant');
t_equal(FromVariant().load('subject', 1, 'session', 'pre').data, [21; 41], 'from note=''recal''');
r = scistack.for_each(@bandpass, struct('signal', scistack.Fixed(Variant(), 'note', []), ...
    'low_hz', 1), {FromVariant()}, 'subject', 1, 'session', 'pre');
t_equal(r.counts.ran, 1, 'ran on the variant saved without a note');
t_equal(FromVariant().load('subject', 1, 'session', 'pre').data, [3; 5], 'from note=[]');
end
