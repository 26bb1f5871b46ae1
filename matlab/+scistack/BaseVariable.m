classdef BaseVariable
%BASEVARIABLE Base class of scistack variables: one subclass per kind of data.
%   A one-line class file declares a variable; the class name is the variable name:
%
%       % RawEMG.m
%       classdef RawEMG < scistack.BaseVariable
%       end
%
%       scistack.configure_database('gait.duckdb', {'subject', 'session'});
%       r = RawEMG().load('subject', 1, 'session', 'pre');   % or load(RawEMG(), ...)
%       r.data, r.metadata, r.oid, r.version, r.created_at
%       rs = RawEMG().load('subject', 1);                    % partial address -> cell
%       all = RawEMG().load_all();                           % struct array
%       RawEMG().save(x, 'subject', 1, 'session', 'pre');   % queued (scistack.flush)
%       oid = RawEMG().save(x, 'subject', 1, 'session', 'pre');  % via `scistack ingest`
%       RawEMG().list_versions('subject', 1), .provenance(...), .delete(...)
%
%   Query values: numbers match numbers (1 and '1' differ, as int and str differ in
%   Python), char matches strings, logical matches booleans, a cell or numeric vector
%   matches any of its elements. Keys other than the schema keys match version keys.
%   'version', N selects version N instead of the current one.
%   Errors: scistack:notFound, scistack:ambiguous, scistack:unsupportedKind,
%   scistack:objectNotFound, scistack:corruptObject, scistack:notConfigured.

    methods
        function out = load(obj, varargin)
            %LOAD One record (a struct) when the query names one address, else a cell
            %   array of records sorted by the schema keys. A record has fields data,
            %   metadata (addr + version keys), oid, version and created_at.
            var = obj.variable_name();
            refuse_inside_call(var, 'load');
            scistack.flush();
            cfg = scistack.internal.project();
            [qk, qv, version] = parse_query(scistack.internal.plain_args(varargin));
            [sel, metas, S, pinned] = scistack.internal.select_records(cfg, var, qk, qv, ...
                version);
            if isempty(sel) && isempty(version) && ~all(ismember(qk, cfg.schema_keys))
                out = by_lineage(obj, cfg, var, qk, qv);   % e.g. load('low_hz', 20)
                if ~isempty(out)
                    return
                end
            end
            if isempty(sel)
                scistack.internal.not_found(cfg, S, var, qk, qv, version);
            end
            addrs = unique(S.P.addr(sel));
            if pinned && numel(addrs) == 1
                if numel(sel) > 1
                    ambiguous(var, S, sel, metas, qk, qv);
                end
                out = scistack.internal.make_record(cfg, S, sel, metas(1), var);
                return
            end
            out = cell(numel(sel), 1);
            raw = scistack.internal.prefetch(cfg.root, S.P.oid(sel));
            for k = 1:numel(sel)
                out{k} = scistack.internal.make_record(cfg, S, sel(k), metas(k), var, ...
                    raw{k});
            end
        end

        function out = load_all(obj, varargin)
            %LOAD_ALL Every current record (optionally filtered by a query, as in load)
            %   as an N x 1 struct array sorted by the schema keys (0 x 1 when none).
            var = obj.variable_name();
            refuse_inside_call(var, 'load_all');
            scistack.flush();
            cfg = scistack.internal.project();
            [qk, qv, version] = parse_query(scistack.internal.plain_args(varargin));
            [sel, metas, S] = scistack.internal.select_records(cfg, var, qk, qv, version);
            out = repmat(struct('data', [], 'metadata', struct(), 'oid', '', ...
                'version', 0, 'created_at', ''), numel(sel), 1);
            raw = scistack.internal.prefetch(cfg.root, S.P.oid(sel));
            for k = 1:numel(sel)
                out(k) = scistack.internal.make_record(cfg, S, sel(k), metas(k), var, ...
                    raw{k});
            end
        end

        function oid = save(obj, x, varargin)
            %SAVE Store X at the given address: stage its payload and manifest, then run
            %   `scistack ingest MANIFEST` (the command is SCISTACK_CLI, default
            %   'scistack'). Returns the oid of the stored value.
            %   Called as a statement (no output), the save is only queued: its files are
            %   written under <project>/.scistack/queue and recorded by the next
            %   scistack.flush (run by itself before reads, for_each, configure_database and
            %   at exit): no Python start per save. See matlab/README.md, "Saving".
            %   X may be a scistack.Thunk result: it is saved by its oid, with its call.
            warn_inside_call(class(obj));
            if nargout == 0
                cfg = scistack.internal.project();
                [addr, vkeys] = scistack.internal.split_meta(cfg, ...
                    scistack.internal.plain_args(varargin));
                scistack.internal.stage(cfg, obj.variable_name(), {x}, {addr}, {vkeys}, ...
                    'queue');
                scistack.internal.queue_state(cfg.root, true);
                return
            end
            scistack.flush();
            [manifest, folder] = obj.stage(x, varargin{:});
            oids = scistack.internal.ingest(manifest, folder, 1);
            oid = oids{1};
        end

        function [manifest, folder] = stage(obj, x, varargin)
            %STAGE Write X's payload(s) and manifest.json into a new folder
            %   <project>/.scistack/staging/<id>/ without ingesting them (see save).
            cfg = scistack.internal.project();
            [addr, vkeys] = scistack.internal.split_meta(cfg, ...
                scistack.internal.plain_args(varargin));
            [manifest, folder] = scistack.internal.stage(cfg, obj.variable_name(), {x}, ...
                {addr}, {vkeys});
        end

        function oids = save_many(obj, values, metadata)
            %SAVE_MANY Store several values with one ingest: VALUES is a cell array,
            %   METADATA a cell array of the same size whose elements are cell arrays of
            %   name/value pairs, e.g. {{'subject', 1, 'session', 'pre'}, ...}.
            scistack.flush();
            cfg = scistack.internal.project();
            if ~iscell(values) || ~iscell(metadata) || numel(values) ~= numel(metadata)
                error('scistack:badArgument', ['save_many(VALUES, METADATA): two cell ', ...
                    'arrays of the same size']);
            end
            addrs = cell(size(values));
            vkeys = cell(size(values));
            for k = 1:numel(values)
                [addrs{k}, vkeys{k}] = scistack.internal.split_meta(cfg, ...
                    scistack.internal.plain_args(metadata{k}));
            end
            [manifest, folder] = scistack.internal.stage(cfg, obj.variable_name(), ...
                values, addrs, vkeys);
            oids = scistack.internal.ingest(manifest, folder, numel(values));
        end

        function out = list_versions(obj, varargin)
            %LIST_VERSIONS Every saved version at the query's address(es), newest first: a
            %   cell array of structs (var, addr, vkeys, version, oid, kind, summary,
            %   created_at, current, call) from `scistack log --json`.
            scistack.flush();
            cfg = scistack.internal.project();
            [qk, qv] = parse_query(scistack.internal.plain_args(varargin));
            out = scistack.internal.cli_json(cfg, 'log', obj.variable_name(), qk, qv, {});
        end

        function call = provenance(obj, varargin)
            %PROVENANCE The call that computed the current value at the query's address:
            %   function, module, code, constants, inputs (var, oid, addr); [] when the value
            %   was saved directly. A containers.Map (its key 'function' is a MATLAB
            %   keyword): p('function'), p('constants'), p('inputs').
            %   Errors scistack:notFound when nothing matches.
            versions = obj.list_versions(varargin{:});
            call = [];
            for k = 1:numel(versions)
                if versions{k}.current
                    call = versions{k}.call;
                    return
                end
            end
            error('scistack:notFound', 'no current %s matches the query', obj.variable_name());
        end

        function out = delete(obj, varargin)
            %DELETE Remove the refs at the query's address (every version, or 'version', N)
            %   with `scistack rm -y`; objects stay until `scistack gc`. Returns rm's report.
            scistack.flush();
            cfg = scistack.internal.project();
            [qk, qv, version] = parse_query(scistack.internal.plain_args(varargin));
            if isempty(qk)
                error('scistack:badArgument', ['delete needs an address, e.g. ', ...
                    'delete(''subject'', 1, ''session'', ''pre'')']);
            end
            extra = {'-y'};
            if ~isempty(version)
                extra = [extra, {'--version', sprintf('%d', version)}];
            end
            out = scistack.internal.cli_json(cfg, 'rm', obj.variable_name(), qk, qv, extra);
        end

        function name = variable_name(obj)
            %VARIABLE_NAME The variable's name: the class name without its package.
            name = class(obj);
            dot = find(name == '.', 1, 'last');
            if ~isempty(dot)
                name = name(dot + 1:end);
            end
        end
    end
end

function warn_inside_call(var)
%WARN_INSIDE_CALL A variable saved in the body of a cached function: a cache hit skips that
%   save, so after an edit and its undo the variable keeps what the other code saved. Warned
%   once per function and variable (not refused: splitting a session into trials in a step
%   has no other way in yet).
persistent warned
inside = scistack.internal.running();
if isempty(inside)
    return
end
if isempty(warned)
    warned = {};
end
key = [inside ':' var];
if any(strcmp(warned, key))
    return
end
warned{end + 1} = key;
warning('scistack:saveInsideCachedCall', ['%s().save inside %s, whose calls scistack caches: ' ...
    'a cache hit of %s skips this save, so after an edit and its undo %s keeps what the other ' ...
    'code saved. Return the value instead (an output of for_each)'], var, inside, inside, var);
end

function refuse_inside_call(var, what)
%REFUSE_INSIDE_CALL A variable loaded in the body of a cached function is an input its call
%   key cannot see: after the variable changed, a cache hit would serve the old result.
inside = scistack.internal.running();
if ~isempty(inside)
    error('scistack:loadInsideCachedCall', ['%s().%s inside %s, whose calls scistack ' ...
        'caches: the cache cannot see what a function loads itself, so after %s changed a ' ...
        'cache hit would serve the old result. Pass %s() as an input instead ' ...
        '(scistack.Fixed(%s(), ...) for one address)'], var, what, inside, var, var, var);
end
end

function [keys, vals, version] = parse_query(args)
if mod(numel(args), 2) ~= 0
    error('scistack:badArgument', ['the query must be name/value pairs, e.g. ', ...
        'load(''subject'', 1, ''session'', ''pre'')']);
end
keys = {};
vals = {};
version = [];
for k = 1:2:numel(args)
    name = args{k};
    if ~ischar(name) || isempty(name)
        error('scistack:badArgument', 'query argument %d must be a key name (char)', k);
    end
    if strcmp(name, 'version')
        version = args{k + 1};
        if ~(isnumeric(version) && isscalar(version) && version == round(version))
            error('scistack:badArgument', '''version'' must be a whole number');
        end
        version = double(version);
        continue
    end
    keys{end + 1} = name; %#ok<AGROW>
    vals{end + 1} = args{k + 1}; %#ok<AGROW>
end
end

function out = by_lineage(obj, cfg, var, qk, qv)
% Values whose lineage matches a non-schema key (a constant such as low_hz): Python finds
% their addresses and versions, MATLAB reads them. [] when none.
out = {};
if any(cellfun(@(v) isnumeric(v) && isempty(v), qv))
    return   % [] (null) is no lineage constant; the command line would drop the key
end
try
    entries = scistack.internal.cli_json(cfg, 'log', var, qk, qv, {});
catch %#ok<CTCH> not found, or no Python project: the caller reports notFound
    return
end
for k = 1:numel(entries)
    e = entries{k};
    if ~e.current
        continue
    end
    args = {};
    names = fieldnames(e.addr);
    for j = 1:numel(names)
        args = [args, {names{j}, e.addr.(names{j})}]; %#ok<AGROW>
    end
    out{end + 1, 1} = obj.load(args{:}, 'version', e.version); %#ok<AGROW>
end
if numel(out) == 1
    out = out{1};
end
end

function ambiguous(var, S, sel, metas, qk, qv)
lines = cell(1, numel(sel));
for k = 1:numel(sel)
    m = metas(k);
    vk = scistack.internal.describe(m.keys(m.naddr + 1:end), m.vals(m.naddr + 1:end));
    if isempty(vk)
        vk = '(no version keys)';
    end
    lines{k} = sprintf('  version %d: %s', S.P.version(sel(k)), vk);
end
error('scistack:ambiguous', ['%s at %s has %d current values that differ in their ', ...
    'version keys:\n%s\nAdd a version key to the query (e.g. ''note'', ''recal''; ', ...
    '''note'', [] for the one saved without it) or pass ''version'', N to choose one'], var, scistack.internal.describe(qk, qv), ...
    numel(sel), strjoin(lines, sprintf('\n')));
end
