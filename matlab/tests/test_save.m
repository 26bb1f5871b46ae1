function cases = test_save(ctx) %#ok<INUSD>
%TEST_SAVE The write side: staging folder, manifest format, payload bytes, and save/load
%   round trips through the real `scistack ingest` (the command SCISTACK_CLI names). Saved
%   values land in <fixture>/saved, a project configure_database creates; the pytest
%   wrapper then checks them with scistack and numpy (same bytes, same oids).
cases = {
    'stage writes payloads and a canonical manifest.json', @staging
    'metadata: whole numbers -> JSON ints, others floats, char -> strings', @metadata
    'save -> scistack ingest -> load gives each value back', @round_trip
    'save_many ingests several values at once, versions count up', @many
    'a failed ingest keeps the staging folder and says how to retry', @failed_ingest
    'bad save arguments are refused before anything is written', @bad_args
    'configure_database creates a new project as Python does', @creates_project
    };
end

function root = saved_project(ctx)
root = fullfile(ctx.fixture, 'saved');
scistack.configure_database(fullfile(root, 'gait.duckdb'), {'subject', 'session'});
end

function staging(ctx)
if exist(fullfile(ctx.fixture, 'saved'), 'dir')
    rmdir(fullfile(ctx.fixture, 'saved'), 's');   % a fresh project for this run
end
root = saved_project(ctx);
[manifest, folder] = SavedValue().stage(struct('arr', [1, 2; 3, 4], 'name', 'x'), ...
    'subject', 1, 'session', 'pre');
t_assert(strncmp(folder, fullfile(root, '.scistack', 'staging'), ...
    numel(fullfile(root, '.scistack', 'staging'))), 'under .scistack/staging');
text = fileread(manifest);
want = ['{"children":[{"kind":"npy","payload":"payload-0.bin"}],"format":1,"items":[', ...
    '{"addr":{"session":"pre","subject":1},"kind":"json","payload":"payload-1.bin",', ...
    '"vkeys":{}}],"schema_keys":["subject","session"],"var":"SavedValue",', ...
    '"writer":"scistack-matlab"}', char(10)];
t_equal(text, want, 'manifest.json');
t_equal(char(t_read(fullfile(folder, 'payload-1.bin'))), ...
    '{"arr":{"$ref":"staged:payload-0.bin"},"name":"x"}', 'json payload');
t_equal(t_read(fullfile(folder, 'payload-0.bin')), scistack.encode_npy([1, 2; 3, 4]), ...
    'child npy payload');
[manifest2, folder2] = SavedValue().stage(int16([1, 2, 3]), 'subject', 1, 'session', 'x');
m = jsondecode(fileread(manifest2));
t_equal(m.items.kind, 'npy', 'a top-level array is npy');
t_equal(t_read(fullfile(folder2, 'payload-0.bin')), scistack.encode_npy(int16([1, 2, 3])), ...
    'npy payload');
t_assert(~strcmp(folder, folder2), 'each stage gets its own folder');
rmdir(folder, 's');
rmdir(folder2, 's');
end

function metadata(ctx)
saved_project(ctx);
[manifest, folder] = SavedValue().stage(1, 'subject', 3, 'session', 'pre', 'gain', 0.5, ...
    'n', 2, 'flag', true, 'big', int64(9007199254740993), 'tag', 'a"b');
text = fileread(manifest);
t_assert(~isempty(strfind(text, '"addr":{"session":"pre","subject":3}')), 'addr: %s', text);
t_assert(~isempty(strfind(text, ['"vkeys":{"big":9007199254740993,"flag":true,', ...
    '"gain":0.5,"n":2,"tag":"a\"b"}'])), 'vkeys: %s', text);
rmdir(folder, 's');
end

function round_trip(ctx)
root = saved_project(ctx);
values = {
    'matrix', [1, 2, 3; 4, 5, 6]
    'col', (1:4)'
    'row', 1:4
    'scalar', 2.5
    'text', ['h', scistack.internal.cp_to_char(233), 'llo']
    'struct', struct('name', 'x', 'arr', int16([1, 2, 3]), 'n', int32(3), 'tags', {{'a', 'b'}})
    'logical', logical([1, 0, 1])
    'complex', complex([1; 2], [3; -4])
    'empty', []
    'nan', NaN
    'int8', int8([1, -2, 3])
    'uint64', uint64([1, 18446744073709551615])
    'single', single([1.5, 2.5])
    'bigint', int64(9007199254740993)
    'true', true
    'list', {1, 'a', []}
    'dollar', containers.Map({'$x', 'b'}, {1, 2})
    'cube', reshape(1:24, 2, 3, 4)
    };
% one manifest, one ingest: a Python start per value had made this the suite's slowest case
% (a single save's own ingest: creates_project; its queued form: many)
addrs = cellfun(@(s) {'subject', 1, 'session', s}, values(:, 1), 'UniformOutput', false);
oids = SavedValue().save_many(values(:, 2)', addrs');
t_equal(numel(oids), size(values, 1), 'an oid per value');
for k = 1:size(values, 1)
    oid = oids{k};
    t_assert(scistack.internal.is_oid(oid), 'save_many returns oids');
    r = SavedValue().load('subject', 1, 'session', values{k, 1});
    t_equal(r.oid, oid, [values{k, 1}, ' oid']);
    want = values{k, 2};
    if isstruct(want)
        want.n = 3;                      % an int32 comes back as a double
        want.tags = {'a', 'b'};
        want = orderfields(want);        % JSON objects come back with sorted keys
    end
    t_equal(r.data, want, values{k, 1});
end
staging = dir(fullfile(root, '.scistack', 'staging'));
t_equal(numel(staging(~ismember({staging.name}, {'.', '..'}))), 0, ...
    'staging folders are removed after ingest');
end

function many(ctx)
saved_project(ctx);
old_db = getenv('SCISTACK_DB');
restore = onCleanup(@() setenv('SCISTACK_DB', old_db)); %#ok<NASGU>
setenv('SCISTACK_DB', ctx.pyproject);   % another project: the command must not follow it
oids = SavedValue().save_many({10, 20, 'x'}, {{'subject', 2, 'session', 'pre'}, ...
    {'subject', 2, 'session', 'post'}, {'subject', 2, 'session', 'pre', 'note', 'v'}});
t_equal(numel(oids), 3, 'three oids');
r = SavedValue().load('subject', 2, 'session', 'post');
t_equal(r.data, 20, 'post');
t_error(@() SavedValue().load('subject', 2, 'session', 'pre'), 'scistack:ambiguous');
SavedValue().save(11, 'subject', 2, 'session', 'post');
r = SavedValue().load('subject', 2, 'session', 'post');
t_equal(r.data, 11, 'the newer save is current');
t_equal(r.version, 2, 'version 2');
old = SavedValue().load('subject', 2, 'session', 'post', 'version', 1);
t_equal(old.data, 20, 'version 1 stays loadable');
end

function failed_ingest(ctx)
root = saved_project(ctx);
old = getenv('SCISTACK_CLI');
restore = onCleanup(@() setenv('SCISTACK_CLI', old)); %#ok<NASGU>
setenv('SCISTACK_CLI', 'false');
err = t_error(@() save_with_oid(1, 'subject', 5), 'scistack:ingestFailed', ...
    'kept in', 'scistack ingest');
folder = regexp(err.message, 'kept in (\S+);', 'tokens', 'once');
t_assert(~isempty(folder) && exist(fullfile(folder{1}, 'manifest.json'), 'file') == 2, ...
    'the staging folder is kept: %s', err.message);
rmdir(folder{1}, 's');
t_assert(exist(fullfile(root, '.scistack', 'staging'), 'dir') == 7, 'staging root exists');
end

function bad_args(ctx)
saved_project(ctx);
t_error(@() SavedValue().save(1, 'session', 'pre', 'subject'), 'scistack:badArgument');
t_error(@() SavedValue().save(1, 'note', 'x'), 'scistack:badArgument', 'schema key');
t_error(@() SavedValue().save(1, 'subject', 1, 'version', 2), 'scistack:badArgument', ...
    'reserved');
t_error(@() SavedValue().save(1, 'subject', [1, 2]), 'scistack:badArgument', 'subject');
t_error(@() SavedValue().save(@sin, 'subject', 1), 'scistack:unsupportedValue');
end

function creates_project(ctx) %#ok<INUSD>
root = tempname();
mkdir(root);
scistack.configure_database(fullfile(root, 'new.duckdb'), {'subject', 'session'});
config = jsondecode(fileread(fullfile(root, '.scistack', 'config.json')));
t_equal(config.db, 'new.duckdb', 'db');
t_equal(config.schema_keys, {'subject'; 'session'}, 'schema keys');
oid = SavedValue().save(int64(7), 'subject', 1);
t_equal(SavedValue().load('subject', 1).oid, oid, 'a MATLAB-only project takes saves');
t_error(@() scistack.configure_database(fullfile(root, 'new.duckdb'), {'subject'}), ...
    'scistack:schemaMismatch');
[status, out, err] = scistack.internal.run_cli('add-key trial', '', root);  % a finer level, from Python
t_equal(status, 0, sprintf('add-key: %s %s', out, err));
lastwarn('');
db = scistack.configure_database(fullfile(root, 'new.duckdb'), {'subject', 'session'});
[~, id] = lastwarn();
t_equal(id, 'scistack:schemaKeysAdded', 'a script written before the level was added opens it');
t_equal(db.schema_keys, {'subject', 'session', 'trial'}, 'with the keys it has now');
t_error(@() scistack.configure_database(fullfile(root, 'new.duckdb'), {'subject'}), ...
    'scistack:schemaMismatch');
rmdir(root, 's');
end

function oid = save_with_oid(varargin)
oid = SavedValue().save(varargin{:});   % with an output: ingested at once
end
