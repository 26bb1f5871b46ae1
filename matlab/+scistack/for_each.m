function report = for_each(fn, inputs, outputs, varargin)
%FOR_EACH Run a MATLAB function over every combination of metadata, with caching and lineage.
%   scistack.for_each(@bandpass, struct('signal', RawEMG(), 'low_hz', 20), {FilteredEMG()}, ...
%       'subject', [1 2 3], 'session', {'pre', 'post'})
%   calls bandpass(signal, low_hz) for each of the 6 combinations, with signal loaded from
%   RawEMG at that subject and session, and saves the result as FilteredEMG there, with its
%   lineage (function, code, inputs, constants). A combination already computed by the same
%   code from the same inputs is skipped (cached), exactly as for_each does in Python; so
%   is one whose inputs hold the same values as another's of this run, which is computed
%   once (each is recorded with its own inputs).
%
%   FN      a named function in a .m file (@bandpass or 'bandpass'). Its identity is the
%           normalised text of the file (comments, blank lines and trailing spaces do not
%           count): editing the code re-runs, editing a comment does not.
%   INPUTS  struct: field = parameter name of FN; value = a variable (RawEMG(): loaded at
%           each combination), scistack.Fixed(RawEMG(), 'session', 'baseline') (some keys
%           pinned), or anything else: a constant (recorded in lineage; queryable from
%           Python as load(low_hz=20)). Arguments are passed by position in FN's parameter
%           order, matched by name (with varargin, unmatched inputs follow in field order).
%           A variable saved below the combination's level (e.g. per session, iterating
%           subjects only) arrives as a cell array of the values found.
%   OUTPUTS a variable or a cell array of variables ({FilteredEMG()}); FN is called with
%           that many output arguments. scistack.Split(TrialEMG(), 'trial') takes a
%           containers.Map from each trial to its value (or a struct, its field names the
%           trials) and saves each at the combination's address plus trial=<key>.
%   Name/value pairs: schema keys to iterate (a numeric vector, a cell array, one value,
%   or [] for every value stored for that key), and the options
%       'dry_run', true        plan only: report what would run
%       'on_error', 'raise'    stop at the first failure and raise it (default 'continue':
%                              record the failure and go on)
%       'helpers', {@smooth}   other functions whose files count in FN's identity
%
%   REPORT is a struct: function, counts (ran, cached, missing, failed, skipped), items
%   (one per combination: combo, status, duration, error, missing, outputs), calls (how
%   many times FN ran), duration, run_id and summary (printed when no output is requested).
%
%   Python does the bookkeeping: one `scistack matlab-plan` call before and one
%   `scistack matlab-commit` call after the loop, however many combinations there are, plus
%   one every 10 s or so of a long loop (what finished so far), so Ctrl-C (which also
%   records what finished) or a kill keeps what ran (SCISTACK_CLI names the command;
%   SCISTACK_COMMIT_EVERY the seconds between commits; matlab/README.md has the formats).
cfg = scistack.internal.project();
scistack.flush();   % queued saves first: they may be inputs
t_all = tic;
[name, file, handle] = scistack.internal.function_file(fn, 'the function', 'for_each');
inside = scistack.internal.running();
if ~isempty(inside)
    % a cache hit of the outer function would skip this run, and its key cannot see the
    % variables this run loads
    error('scistack:forEachInsideCachedCall', ['for_each(%s) inside %s, whose calls ' ...
        'scistack caches: a cache hit of %s would skip this run, and the cache cannot see ' ...
        'the variables it loads, so after they changed it would serve the old result. Call ' ...
        'for_each at the top level of your script, one for_each per step'], name, inside, inside);
end
[opts, iterate] = parse_options(cfg, scistack.internal.plain_args(varargin));
helper_files = cell(1, numel(opts.helpers));
for k = 1:numel(opts.helpers)
    [~, helper_files{k}] = scistack.internal.function_file(opts.helpers{k}, 'a helper', ...
        'for_each');
end
[out_vars, out_names, out_splits] = output_list(outputs);
if ~isstruct(inputs) || ~isscalar(inputs)
    error('scistack:badArgument', ['INPUTS must be a scalar struct: parameter name -> ', ...
        'variable, scistack.Fixed(...) or constant, e.g. struct(''signal'', RawEMG(), ', ...
        '''low_hz'', 20)']);
end
names = fieldnames(inputs)';
if numel(unique(out_names)) ~= numel(out_names)
    error('scistack:badArgument', 'OUTPUTS names a variable twice');
end
stage = scistack.internal.Staging(cfg.root);
try
    [spec, is_const] = input_specs(stage, inputs, names);
    req = containers.Map('KeyType', 'char', 'ValueType', 'any');
    req('children') = stage.children;
    req('format') = int64(1);
    req('function') = struct('file', file, 'helpers', {helper_files}, 'name', name);
    req('inputs') = spec;
    req('iterate') = iterate;
    req('order') = names;
    req('outputs') = out_names;
    req('splits') = out_splits;
    req('schema_keys') = cfg.schema_keys;
    req('writer') = 'scistack-matlab';
    n_plan_children = numel(stage.children);
    plan_path = stage.write_json('plan.json', req);
    [status, out, err] = scistack.internal.run_cli('matlab-plan', plan_path, cfg.root);
    if status ~= 0
        error('scistack:planFailed', 'for_each(%s): %s', name, ...
            scistack.internal.cli_message(err, out, status));
    end
    P = stage.read_json('plan-result.json');
catch e
    stage.remove();
    rethrow(e);
end
combos = member(P, 'combos');
order = member(P, 'arguments');
statuses = cellfun(@(c) c.status, combos, 'UniformOutput', false);
n = numel(combos);
outputs_of = cell(1, n);
for k = find(strcmp(statuses, 'cached'))
    outputs_of{k} = combos{k}.outs;
end
errors = cell(1, n);
for k = find(strcmp(statuses, 'failed'))   % by the plan: an ambiguous input fails its
    errors{k} = combos{k}.error;           % combination alone, as in Python
end
if opts.dry_run
    stage.remove();
    statuses(strcmp(statuses, 'run')) = {'would_run'};
    report = make_report(name, combos, statuses, zeros(1, n), errors, outputs_of, 0, ...
        toc(t_all), '');
    report.summary = ['[dry run] ', report.summary];
    show_summary(report, nargout);
    return
end

% recorded as the loop goes (every few seconds), and what finished when it is interrupted
recorder = scistack.internal.Recorder(stage, cfg.root, name, n_plan_children, t_all);
cleanup = onCleanup(@() recorder.interrupted()); %#ok<NASGU>
durations = zeros(1, n);
calls = 0;
stopped = [];
planned_failures = find(strcmp(statuses, 'failed'));
if strcmp(opts.on_error, 'raise') && ~isempty(planned_failures)  % nothing runs after it
    stopped = struct('index', planned_failures(1), ...
        'error', struct('identifier', '', 'message', errors{planned_failures(1)}));
end
rescan = true;      % look at the pack folder once; the inputs exist throughout the run
for k = find(strcmp(statuses, 'run'))
    if ~isempty(stopped)
        statuses{k} = 'skipped';
        continue
    end
    c = combos{k};
    if isfield(c, 'same') && strcmp(statuses{c.same + 1}, 'ran')
        % the same call key as combination c.same of this run (the same values at another
        % address), which ran: served its result, recorded by the commit with this
        % combination's own inputs (as Python's for_each serves it); if it did not run,
        % this one runs
        statuses{k} = 'cached';
        recorder.add(struct('duration', 0, 'index', int64(k - 1), 'status', 'cached'));
        continue
    end
    started = scistack.internal.unix_time();
    t0 = tic;
    try
        args = load_arguments(cfg, c, order, is_const, inputs, rescan);
        rescan = false;
        values = cell(1, numel(out_vars));
        calls = calls + 1;
        scistack.internal.running(name);
        [values{:}] = handle(args{:});
        scistack.internal.running('');
        [values, labels] = split_parts(values, out_splits, name);
        entries = stage.add_values(values);
        durations(k) = toc(t0);
        result = struct('duration', durations(k), 'index', int64(k - 1), ...
            'labels', {labels}, 'outputs', {entries}, 'started', started, 'status', 'ran');
        statuses{k} = 'ran';
    catch e
        scistack.internal.running('');
        durations(k) = toc(t0);
        errors{k} = error_text(e);
        result = struct('duration', durations(k), 'error', errors{k}, ...
            'index', int64(k - 1), 'started', started, 'status', 'failed', ...
            'traceback', stack_text(e));
        statuses{k} = 'failed';
        if strcmp(opts.on_error, 'raise')
            stopped = struct('index', k, 'error', e);
        end
    end
    recorder.add(result);
end

C = recorder.finish();
stage.remove();
committed = member(C, 'outputs');
for k = 1:n
    if ~isempty(committed{k})
        outputs_of{k} = committed{k};
    end
end
report = make_report(name, combos, statuses, durations, errors, outputs_of, calls, ...
    toc(t_all), member(C, 'run_id'));
show_summary(report, nargout);
if ~isempty(stopped)
    c = combos{stopped.index};
    error('scistack:forEachFailed', 'for_each(%s) stopped at %s: %s', name, ...
        combo_text(c.combo), error_text(stopped.error));
end
end

% -- arguments -------------------------------------------------------------------------
function [opts, iterate] = parse_options(cfg, args)
opts = struct('dry_run', false, 'on_error', 'continue', 'helpers', {cell(1, 0)});
iterate = cell(1, 0);
if mod(numel(args), 2) ~= 0
    error('scistack:badArgument', ['after OUTPUTS, for_each takes name/value pairs: ', ...
        'schema keys to iterate (''subject'', [1 2 3]) and options']);
end
for k = 1:2:numel(args)
    key = args{k};
    v = args{k + 1};
    if ~ischar(key) || isempty(key)
        error('scistack:badArgument', 'for_each argument %d must be a name (char)', k + 3);
    end
    switch key
        case 'dry_run'
            opts.dry_run = logical(v);
        case 'on_error'
            if ~ischar(v) || ~any(strcmp(v, {'continue', 'raise'}))
                error('scistack:badArgument', ['''on_error'' is ''continue'' (record and go ', ...
                    'on) or ''raise'' (stop at the first failure)']);
            end
            opts.on_error = v;
        case 'helpers'
            if ~iscell(v)
                v = {v};
            end
            opts.helpers = v(:)';
        otherwise
            if ~any(strcmp(key, cfg.schema_keys))
                error('scistack:badArgument', ['for_each iterates schema keys only; "%s" is ', ...
                    'not in the schema {%s} (nor an option: dry_run, on_error, helpers). Pass ', ...
                    'other settings through INPUTS as constants'], key, ...
                    strjoin(cfg.schema_keys, ', '));
            end
            iterate{end + 1} = {key, iterate_values(key, v)}; %#ok<AGROW>
    end
end
end

function vals = iterate_values(key, v)
if isempty(v)
    vals = cell(1, 0);        % every value stored for this key
elseif iscell(v)
    vals = cell(1, numel(v));
    for j = 1:numel(v)
        vals{j} = scistack.internal.meta_value(key, v{j});
    end
elseif ischar(v)
    vals = {v};
elseif isnumeric(v) || islogical(v)
    vals = cell(1, numel(v));
    for j = 1:numel(v)
        vals{j} = scistack.internal.meta_value(key, v(j));
    end
else
    error('scistack:badArgument', ['values of "%s" must be numbers, a cell array or ', ...
        'char, got a %s'], key, class(v));
end
end

function [vars, names, splits] = output_list(outputs)
if ~iscell(outputs)
    outputs = {outputs};
end
vars = outputs(:)';
names = cell(1, numel(vars));
splits = repmat({''}, 1, numel(vars));   % per output: '' or the key a Split fills
for k = 1:numel(vars)
    if isa(vars{k}, 'scistack.Split')
        splits{k} = vars{k}.by;
        vars{k} = vars{k}.variable;
    end
end
if isempty(vars)
    error('scistack:badArgument', ['for_each needs at least one output variable, e.g. ', ...
        '{FilteredEMG()}']);
end
for k = 1:numel(vars)
    if ~isa(vars{k}, 'scistack.BaseVariable')
        error('scistack:badArgument', ['OUTPUTS must be variables such as {FilteredEMG()}; ', ...
            'element %d is a %s'], k, class(vars{k}));
    end
    names{k} = vars{k}.variable_name();
end
end

function [flat, labels] = split_parts(outs, splits, name)
% The values to stage, a split output's parts in place of its map, and per output the
% labels of its parts (an empty cell for a plain output).
flat = cell(1, 0);
labels = cell(1, numel(outs));
for j = 1:numel(outs)
    labels{j} = cell(1, 0);
    if isempty(splits{j})
        flat{end + 1} = outs{j}; %#ok<AGROW>
        continue
    end
    v = outs{j};
    if isstruct(v) && isscalar(v)      % field names as the keys (char labels)
        keys_ = fieldnames(v)';
        parts = cellfun(@(f) v.(f), keys_, 'UniformOutput', false);
    elseif isa(v, 'containers.Map')
        keys_ = keys(v);
        parts = values(v, keys_);
    else
        error('scistack:badOutput', ['%s returned a %s for output %d, split by %s; return a ', ...
            'containers.Map from each %s to its value, e.g. containers.Map({1, 2}, {a, b}), ', ...
            'or a struct whose field names are the %s values'], ...
            name, class(v), j, splits{j}, splits{j}, splits{j});
    end
    for m = 1:numel(keys_)
        labels{j}{end + 1} = scistack.internal.meta_value(splits{j}, keys_{m});
        flat{end + 1} = parts{m}; %#ok<AGROW>
    end
end
end

function [spec, is_const] = input_specs(stage, inputs, names)
spec = containers.Map('KeyType', 'char', 'ValueType', 'any');
is_const = containers.Map('KeyType', 'char', 'ValueType', 'logical');
for k = 1:numel(names)
    v = inputs.(names{k});
    is_const(names{k}) = false;
    if isa(v, 'scistack.Fixed')
        pins = containers.Map('KeyType', 'char', 'ValueType', 'any');
        for j = 1:numel(v.keys)
            pins(v.keys{j}) = v.values{j};
        end
        spec(names{k}) = struct('fixed', pins, 'var', v.variable.variable_name());
    elseif isa(v, 'scistack.BaseVariable')
        spec(names{k}) = struct('var', v.variable_name());
    else
        try
            entries = stage.add_values({v});
        catch e
            id = e.identifier;
            if isempty(id)
                id = 'scistack:unsupportedValue';
            end
            error(id, 'input "%s": %s', names{k}, e.message);
        end
        spec(names{k}) = entries{1};
        is_const(names{k}) = true;
    end
end
end

function args = load_arguments(cfg, c, order, is_const, inputs, rescan)
oids = cell(1, 0);
for a = 1:numel(order)
    if ~is_const(order{a})
        rec = c.inputs.(order{a});
        if isfield(rec, 'members')
            oids = [oids, rec.members]; %#ok<AGROW>
        else
            oids{end + 1} = rec.oid; %#ok<AGROW>
        end
    end
end
raw = scistack.internal.prefetch(cfg.root, oids, rescan);
r = 0;
args = cell(1, numel(order));
for a = 1:numel(order)
    if is_const(order{a})
        args{a} = inputs.(order{a});
        continue
    end
    rec = c.inputs.(order{a});
    if isfield(rec, 'members')
        vals = cell(1, numel(rec.members));
        for m = 1:numel(rec.members)
            r = r + 1;
            vals{m} = scistack.read_object(cfg.root, rec.members{m}, rec.var, raw{r});
        end
        args{a} = vals;
    else
        r = r + 1;
        args{a} = scistack.read_object(cfg.root, rec.oid, rec.var, raw{r});
    end
end
end

function v = member(obj, key)
% A member of a parsed JSON object: a struct, or a containers.Map when some key is not a
% valid field name (such as "function").
if isa(obj, 'containers.Map')
    v = obj(key);
else
    v = obj.(key);
end
end

% -- results ---------------------------------------------------------------------------
function t = error_text(e)
if isempty(e.identifier)
    t = e.message;
else
    t = [e.identifier, ': ', e.message];
end
end

function t = stack_text(e)
lines = cell(1, numel(e.stack));
for s = 1:numel(e.stack)
    lines{s} = sprintf('  at %s line %d', e.stack(s).name, e.stack(s).line);
end
t = strjoin([{error_text(e)}, lines], sprintf('\n'));
end

function t = combo_text(combo)
% The combination as text, keys in schema order: subject=1, session='pre'.
cfg = scistack.internal.project();
keys = cfg.schema_keys(isfield(combo, cfg.schema_keys));
vals = cellfun(@(k) combo.(k), keys, 'UniformOutput', false);
t = scistack.internal.describe(keys, vals);
end

function report = make_report(name, combos, statuses, durations, errors, outputs_of, ...
    calls, duration, run_id)
n = numel(combos);
items = repmat(struct('combo', struct(), 'status', '', 'duration', 0, 'error', '', ...
    'missing', {cell(1, 0)}, 'outputs', {cell(1, 0)}), n, 1);
lines = cell(1, 0);
for k = 1:n
    c = combos{k};
    items(k).combo = c.combo;
    items(k).status = statuses{k};
    items(k).duration = durations(k);
    if ~isempty(errors{k})
        items(k).error = errors{k};
        lines{end + 1} = sprintf('  failed %s: %s', combo_text(c.combo), errors{k}); %#ok<AGROW>
    end
    if isfield(c, 'detail')
        items(k).missing = c.detail;
        lines{end + 1} = sprintf('  missing at %s: %s', combo_text(c.combo), ...
            strjoin(c.detail, '; ')); %#ok<AGROW>
    end
    if ~isempty(outputs_of{k})
        items(k).outputs = outputs_of{k};
    end
end
names = {'ran', 'cached', 'missing', 'failed', 'skipped', 'would_run'};
counts = struct();
parts = cell(1, 0);
for j = 1:numel(names)
    counts.(names{j}) = sum(strcmp(statuses, names{j}));
    if counts.(names{j}) > 0 || j <= 4
        parts{end + 1} = sprintf('%d %s', counts.(names{j}), names{j}); %#ok<AGROW>
    end
end
head = sprintf('for_each(%s): %s in %.2f s', name, strjoin(parts, ', '), duration);
if numel(lines) > 5
    lines = [lines(1:5), {sprintf('  ... and %d more', numel(lines) - 5)}];
end
report = struct('function', name, 'counts', counts, 'items', items, 'calls', calls, ...
    'duration', duration, 'run_id', run_id, ...
    'summary', strjoin([{head}, lines], sprintf('\n')));
end

function show_summary(report, n_out)
if n_out == 0
    fprintf('%s\n', report.summary);
end
end
