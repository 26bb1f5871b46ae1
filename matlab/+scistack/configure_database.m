function db = configure_database(path, schema_keys, lineage_path) %#ok<INUSD>
%CONFIGURE_DATABASE Open a scistack project for this MATLAB session.
%   DB = scistack.configure_database(PATH, SCHEMA_KEYS) remembers the project whose
%   database file is PATH (e.g. 'gait.duckdb'; a folder works too) and whose schema keys
%   are SCHEMA_KEYS, a cell array of names such as {'subject', 'session'}. Objects are read
%   from <folder>/.scistack/objects and refs from <folder>/.scistack/refs.log. When
%   <folder>/.scistack/config.json exists, its schema keys must equal SCHEMA_KEYS (same
%   names, same order), else scistack:schemaMismatch.
%   When PATH is a file name (not a folder) and the project does not exist yet, it is
%   created as Python's configure_database creates it: <folder>/.scistack/config.json
%   naming the database file and the schema keys (the objects, the journal and the
%   .duckdb file appear with the first save).
%   A lab project (config.json names a shared PostgreSQL journal and an S3 object store,
%   joined from Python) is read through a local mirror: the `scistack matlab-mirror`
%   command copies the shared journal's new lines to <folder>/.scistack/cache/refs.log (now,
%   and before a read when older than SCISTACK_LAB_REFRESH seconds, default 5) and fetches
%   objects missing from the local cache <folder>/.scistack/cache/objects; a second load
%   of a value reads only local files.
%   DB is a struct with fields root, path and schema_keys.
%   PATH and SCHEMA_KEYS may be MATLAB strings ("gait.duckdb", ["subject" "session"]).
%   A third argument (the old separate lineage database, e.g. "pipeline.db") is accepted
%   and ignored, as in Python: lineage lives in the same project.
path = scistack.internal.plain(path);
schema_keys = scistack.internal.plain(schema_keys);
if ~ischar(path) || isempty(path)
    error('scistack:badArgument', 'PATH must be the project''s .duckdb file or its folder');
end
if ischar(schema_keys)
    schema_keys = {schema_keys};
end
if ~iscell(schema_keys) || isempty(schema_keys)
    error('scistack:badArgument', ['SCHEMA_KEYS must be a cell array of key names, e.g. ', ...
        '{''subject'', ''session''}']);
end
schema_keys = schema_keys(:)';
for k = 1:numel(schema_keys)
    key = schema_keys{k};
    if ~ischar(key) || ~scistack.internal.is_field_name(key) || strcmp(key, 'version')
        error('scistack:badArgument', ['schema key %d is not a valid name (a letter, then ', ...
            'letters, digits or _; not "version")'], k);
    end
end
if numel(unique(schema_keys)) ~= numel(schema_keys)
    error('scistack:badArgument', 'SCHEMA_KEYS has a repeated name');
end
path = absolute(path);
if exist(path, 'dir')
    root = path;
else
    root = fileparts(path);
end
while numel(root) > 1 && (root(end) == '/' || root(end) == '\')
    root = root(1:end - 1);
end
config = fullfile(root, '.scistack', 'config.json');
if exist(config, 'file')
    c = jsondecode(fileread(config));
    if ~isfield(c, 'format') || c.format ~= 1
        error('scistack:formatMismatch', ['%s is not a version-1 scistack project; update ', ...
            'the MATLAB client'], config);
    end
    saved = {};
    if isfield(c, 'schema_keys')
        saved = c.schema_keys;
        if ischar(saved)
            saved = {saved};
        end
        saved = saved(:)';
    end
    added = {};
    if isfield(c, 'added_keys')
        added = c.added_keys;
        if ischar(added)
            added = {added};
        end
    end
    if numel(schema_keys) < numel(saved) && isequal(saved(1:numel(schema_keys)), schema_keys) ...
            && all(ismember(saved(numel(schema_keys) + 1:end), added))
        % a script written before a finer level was added (scistack add-key): its keys
        % still mean what they meant
        warning('scistack:schemaKeysAdded', ['the project %s has schema keys {%s} since a ', ...
            'finer level was added; opened with them (update the list in configure_database)'], ...
            root, quoted(saved));
        schema_keys = saved;
    end
    if ~isequal(saved, schema_keys)
        error('scistack:schemaMismatch', ['the project %s was created with schema keys ', ...
            '{%s} but configure_database was given {%s}: pass the same keys in the same ', ...
            'order'], root, quoted(saved), quoted(schema_keys));
    end
elseif ~exist(path, 'dir')
    create_project(root, path, schema_keys);
end
db = struct('root', root, 'path', path, 'schema_keys', {schema_keys});
scistack.internal.project(db);
if scistack.internal.is_lab(root)
    scistack.internal.lab_sync(root);  % a lab project: mirror its shared journal now
end
scistack.flush();   % saves queued by an earlier session that ended before its flush
end

function create_project(root, path, schema_keys)
[ok, msg] = mkdir(fullfile(root, '.scistack'));
if ~ok
    error('scistack:io', 'cannot create the project folder %s: %s', ...
        fullfile(root, '.scistack'), msg);
end
[~, base, ext] = fileparts(path);
config = containers.Map('KeyType', 'char', 'ValueType', 'any');
config('db') = [base, ext];
config('format') = int64(1);
config('schema_keys') = schema_keys;
scistack.internal.write_bytes(fullfile(root, '.scistack', 'config.json'), ...
    [uint8(scistack.encode_json(config)), uint8(10)]);
end

function p = absolute(p)
if ispc
    isabs = numel(p) >= 2 && (p(2) == ':' || (p(1) == '\' && p(2) == '\'));
else
    isabs = p(1) == '/';
end
if ~isabs
    p = fullfile(pwd, p);
end
end

function s = quoted(keys)
s = strjoin(cellfun(@(k) ['''', k, ''''], keys, 'UniformOutput', false), ', ');
end
