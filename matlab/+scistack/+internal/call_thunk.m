function varargout = call_thunk(info, varargin)
%CALL_THUNK One call of a scistack.Thunk: key it and look it up in Python (`scistack
%   matlab-thunk`), return the stored outputs on a hit; else call the function INFO.name with every
%   loaded record replaced by its data, and record the outputs, the call and its cache
%   entry (`scistack matlab-thunk-commit`). Each result is a record: data, metadata, oid,
%   call, cached. An answer is remembered for the session (keyed by the request, the
%   function files' text and the constants' bytes), so a repeated call starts no Python.
persistent memo
if isempty(memo)
    memo = containers.Map('KeyType', 'char', 'ValueType', 'any');
end
cfg = scistack.internal.project();
n = max(nargout, 1);
started = scistack.internal.unix_time();
t0 = tic;
stage = scistack.internal.Staging(cfg.root);
try
    specs = cell(1, numel(varargin));
    for k = 1:numel(varargin)
        specs{k} = describe(stage, varargin{k}, k);
    end
    req = containers.Map('KeyType', 'char', 'ValueType', 'any');
    req('args') = specs;
    req('children') = stage.children;
    req('format') = int64(1);
    req('function') = struct('file', info.file, 'helpers', {info.helpers}, 'name', info.name);
    req('nargout') = int64(n);
    req('schema_keys') = cfg.schema_keys;
    req('writer') = 'scistack-matlab';
    n_req_children = numel(stage.children);
    path = stage.write_json('thunk.json', req);
    key = memo_key(cfg, stage, info, path);
    if ~isempty(key) && isKey(memo, key)
        hit = memo(key);
        try
            varargout = stored_results(cfg, info, hit.outs, hit.call, n);
            stage.remove();
            return
        catch e %#ok<NASGU>
            remove(memo, key);   % an output was garbage-collected: ask Python again
        end
    end
    [status, out, err] = scistack.internal.run_cli('matlab-thunk', path, cfg.root);
    if status ~= 0
        error('scistack:thunkFailed', 'Thunk(%s): %s', info.name, cli_text(err, out, status));
    end
    T = stage.read_json('thunk-result.json');
catch e
    stage.remove();
    rethrow(e);
end
if strcmp(T.status, 'cached')
    stage.remove();
    remember(memo, key, T.outs, T.call);
    varargout = stored_results(cfg, info, T.outs, T.call, n);
    return
end
args = varargin;
for k = 1:numel(args)
    args{k} = unwrap(args{k});
end
values = cell(1, n);
try
    scistack.internal.running(info.name);
    [values{:}] = feval(info.name, args{:});   % by name: an edited, cleared file is read again
    scistack.internal.running('');
    entries = stage.add_values(values);
catch e
    scistack.internal.running('');
    stage.remove();
    rethrow(e);
end
res = containers.Map('KeyType', 'char', 'ValueType', 'any');
res('children') = stage.children(n_req_children + 1:end);
res('duration') = toc(t0);
res('env') = scistack.internal.environment();
res('format') = int64(1);
res('outputs') = entries;
res('started') = started;
res('writer') = 'scistack-matlab';
results_path = stage.write_json('thunk-results.json', res);
[status, out, err] = scistack.internal.run_cli('matlab-thunk-commit', results_path, cfg.root);
if status ~= 0
    error('scistack:commitFailed', ['Thunk(%s) ran but recording the call failed: %s\n', ...
        'The outputs are kept in %s; retry with: scistack matlab-thunk-commit %s'], ...
        info.name, cli_text(err, out, status), stage.folder, results_path);
end
C = stage.read_json('thunk-commit.json');
stage.remove();
outs = cellstr_of(C.outs);
remember(memo, key, outs, C.call);
varargout = cell(1, n);
for k = 1:n
    varargout{k} = result(values{k}, outs{k}, C.call, false);
end
end

% -- arguments -------------------------------------------------------------------------
function spec = describe(stage, v, k)
% How the lookup sees argument K: a record by its oid (and where it was loaded), a cell or
% struct array of records by their oids, anything else as a staged constant.
if is_record(v) && isscalar(v)
    spec = record_spec(v);
elseif is_record(v)
    spec = struct('members', {arrayfun(@record_spec, v(:)', 'UniformOutput', false)});
elseif iscell(v) && ~isempty(v) && all(cellfun(@(r) is_record(r) && isscalar(r), v))
    spec = struct('members', {cellfun(@record_spec, v(:)', 'UniformOutput', false)});
else
    try
        entries = stage.add_values({v});
    catch e
        error('scistack:unsupportedValue', 'Thunk argument %d: %s', k, e.message);
    end
    spec = entries{1};
end
end

function spec = record_spec(r)
if isfield(r, 'call') && ~isempty(r.call)
    spec = struct('call', r.call, 'oid', r.oid);
else
    spec = struct('metadata', r.metadata, 'oid', r.oid);
end
end

function v = unwrap(v)
if is_record(v)
    if isscalar(v)
        v = v.data;
    else
        v = arrayfun(@(r) r.data, v, 'UniformOutput', false);
    end
elseif iscell(v) && ~isempty(v) && all(cellfun(@is_record, v))
    v = cellfun(@(r) r.data, v, 'UniformOutput', false);
end
end

function tf = is_record(v)
tf = isstruct(v) && all(isfield(v, {'data', 'metadata', 'oid'}));
end

% -- results ---------------------------------------------------------------------------
function out = stored_results(cfg, info, outs, call, n)
outs = cellstr_of(outs);
if numel(outs) < n
    error('scistack:thunkFailed', 'Thunk(%s): the cache holds %d output(s), %d asked', ...
        info.name, numel(outs), n);
end
raw = scistack.internal.prefetch(cfg.root, outs(1:n));
out = cell(1, n);
for k = 1:n
    out{k} = result(scistack.read_object(cfg.root, outs{k}, info.name, raw{k}), outs{k}, ...
        call, true);
end
end

function r = result(data, oid, call, cached)
r = struct('data', {data}, 'metadata', struct(), 'oid', oid, 'call', call, 'cached', cached);
end

function c = cellstr_of(v)
if ischar(v)
    c = {v};
else
    c = v(:)';
end
end

% -- the session memo ------------------------------------------------------------------
function key = memo_key(cfg, stage, info, path)
% The request, the function files' text and every staged payload's bytes: equal keys are
% the same call of the same code (small constants only: a key is held in memory).
parts = {cfg.root, fileread(path), fileread(info.file)};
for k = 1:numel(info.helpers)
    parts{end + 1} = fileread(info.helpers{k}); %#ok<AGROW>
end
total = 0;
for k = 0:stage.count - 1
    bytes = scistack.internal.read_bytes(fullfile(stage.folder, sprintf('payload-%d.bin', k)));
    total = total + numel(bytes);
    if total > 65536
        key = '';
        return
    end
    parts{end + 1} = char(bytes'); %#ok<AGROW>
end
key = strjoin(parts, char(1));
end

function remember(memo, key, outs, call)
if ~isempty(key)
    memo(key) = struct('outs', {cellstr_of(outs)}, 'call', call);
end
end

function t = cli_text(err, out, status)
t = strtrim(regexprep([err, ' ', out], '^\s*error:\s*', ''));
if isempty(t)
    t = sprintf('the scistack command exited with status %d and printed nothing', status);
end
end
