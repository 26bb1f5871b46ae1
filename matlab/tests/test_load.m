function cases = test_load(ctx) %#ok<INUSD>
%TEST_LOAD The BaseVariable API: load, load_all, queries, errors; configure_database.
cases = {
    'load one address -> struct with data, metadata, oid, version, created_at', @one
    'partial address -> cell sorted by schema keys', @partial
    'a value saved at a coarser address loads with its own keys', @coarse
    'numbers match numbers, char matches strings (1 ~= ''1'')', @typed_values
    '''version'', N selects a version; version keys select a variant', @versions
    'several version-key variants at one address -> scistack:ambiguous', @ambiguous
    'nothing found -> scistack:notFound naming the query and what is near', @not_found
    'load_all -> struct array of every current record', @load_all
    'query by a list of values, by a big integer, by a version key', @query_forms
    'a table that is not an Arrow stream -> scistack:corruptObject naming the variable', @unsupported
    'bytes kind -> uint8 column; code kind -> text', @bytes_kind
    'zstd-compressed and raw objects both load', @compressed
    'missing, corrupt, badly named objects raise clear errors', @broken
    'configure_database checks config.json and remembers the project', @configure
    'a variable class in a package is named by its last part', @package_class
    };
end

function one(ctx)
t_use(ctx);
r = Trial().load('subject', 1, 'session', 'pre');
t_equal(fieldnames(r), {'data'; 'metadata'; 'oid'; 'version'; 'created_at'}, 'fields');
t_equal(r.data, 's1-pre-v2', 'data');
t_equal(r.metadata, struct('subject', 1, 'session', 'pre'), 'metadata');
t_equal(r.version, 2, 'version');
t_assert(scistack.internal.is_oid(r.oid), 'oid');
t_assert(~isempty(regexp(r.created_at, '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$', 'once')), ...
    'created_at %s', r.created_at);
r2 = load(Trial(), 'session', 'pre', 'subject', 1);
t_equal(r2.oid, r.oid, 'function syntax, keys in any order');
end

function partial(ctx)
t_use(ctx);
rs = Trial().load('subject', 1);
t_assert(iscell(rs), 'a cell array');
t_equal(cellfun(@(r) r.data, rs, 'UniformOutput', false), {'s1-post-v1'; 's1-pre-v2'}, ...
    'sorted by session');
rs = Trial().load('session', 'pre');
t_equal(cellfun(@(r) r.data, rs, 'UniformOutput', false), ...
    {'s1-pre-v2'; 's2-pre-v1'; 's2-pre-v2-recal'; 's5-big'; 's''1''-pre-v1'}, ...
    'numbers before strings, then version keys');
one = Trial().load('subject', '1');
t_assert(iscell(one) && numel(one) == 1, 'a partial query with one match is still a cell');
end

function coarse(ctx)
t_use(ctx);
r = Trial().load('subject', 3);
t_assert(isstruct(r), 'subject alone is the full address of this value');
t_equal(r.data, 's3-v1', 'data');
t_equal(r.metadata, struct('subject', 3), 'metadata');
t_error(@() Trial().load('subject', 3, 'session', 'pre'), 'scistack:notFound');
end

function typed_values(ctx)
t_use(ctx);
r = Trial().load('subject', '1', 'session', 'pre');
t_equal(r.data, 's''1''-pre-v1', 'string subject');
r = Trial().load('subject', 1, 'session', 'pre');
t_equal(r.data, 's1-pre-v2', 'numeric subject');
r = Trial().load('subject', int8(1), 'session', 'pre');
t_equal(r.data, 's1-pre-v2', 'an integer class matches too');
t_error(@() Trial().load('subject', true, 'session', 'pre'), 'scistack:notFound');
end

function versions(ctx)
t_use(ctx);
r = Trial().load('subject', 1, 'session', 'pre', 'version', 1);
t_equal(r.data, 's1-pre-v1', 'old version');
t_equal(r.version, 1, 'version field');
r = Trial().load('subject', 2, 'session', 'pre', 'note', 'recal');
t_equal(r.data, 's2-pre-v2-recal', 'by version key');
t_equal(r.metadata, struct('subject', 2, 'session', 'pre', 'note', 'recal'), 'metadata');
r = Trial().load('subject', 2, 'session', 'pre', 'version', 1);
t_equal(r.data, 's2-pre-v1', 'variant by version');
r = Trial().load('subject', 2, 'session', 'pre', 'note', []);   % Python's note=None
t_assert(isstruct(r), '[] names the variant saved without a note: one record, not both');
t_equal(r.data, 's2-pre-v1', 'the variant saved without a note');
rs = Trial().load('session', 'pre', 'note', []);
t_equal(numel(rs), 4, 'every pre value but the recal one');
t_error(@() Trial().load('subject', 1, 'session', 'post', 'version', 2), ...
    'scistack:notFound', 'version=2');
t_error(@() Trial().load('subject', 1, 'version', 'x'), 'scistack:badArgument');
end

function ambiguous(ctx)
t_use(ctx);
t_error(@() Trial().load('subject', 2, 'session', 'pre'), 'scistack:ambiguous', ...
    'Trial', 'subject=2, session=''pre''', 'note=''recal''', '(no version keys)', '''version''', ...
    '''note'', []');
end

function not_found(ctx)
t_use(ctx);
t_error(@() Trial().load('subject', 9, 'session', 'pre'), 'scistack:notFound', ...
    'Trial', 'subject=9, session=''pre''', 'nearest', 'subject=1, session=''pre''');
t_error(@() Trial().load('subject', 2, 'session', 'post'), 'scistack:notFound', ...
    'deleted');
t_error(@() Trial().load('subject', 1, 'colour', 'red'), 'scistack:notFound', ...
    'no Trial value has the key colour');
t_error(@() SavedValue().load('subject', 1), 'scistack:notFound', 'SavedValue', ...
    'saved variables: ');
end

function load_all(ctx)
t_use(ctx);
a = Trial().load_all();
t_assert(isstruct(a), 'struct array');
t_equal(size(a), [8, 1], 'eight current records');
t_equal({a.data}', {'s1-post-v1'; 's1-pre-v2'; 's2-pre-v1'; 's2-pre-v2-recal'; 's3-v1'; ...
    's4-a'; 's5-big'; 's''1''-pre-v1'}, 'sorted');
t_equal(a(6).metadata.k, {1, struct('vkeys', 2)}, 'a list-valued version key');
b = Trial().load_all('subject', 2);
t_equal(size(b), [2, 1], 'filtered');
m = Many().load_all('session', 's3');
t_equal(numel(m), 286, 'Many s3');
t_equal(m(1).data, 1.5, 'Many data');
end

function query_forms(ctx)
t_use(ctx);
rs = Trial().load('subject', {1, 2}, 'session', 'pre');
t_equal(numel(rs), 3, 'a cell of values: any of them');
rs = Trial().load('subject', [1, 3]);
t_equal(numel(rs), 3, 'a numeric vector: any of them');
big = int64(4611686018427387904) + int64(1);
r = Trial().load('subject', big, 'session', 'pre');
t_equal(r.data, 's5-big', '2^62 + 1 exactly');
t_equal(r.metadata.subject, big, 'big int metadata is int64');
t_error(@() Trial().load('subject', big + 1, 'session', 'pre'), 'scistack:notFound');
r = Trial().load('session', 'a{,"}');
t_equal(r{1}.data, 's4-a', 'string with braces');
end

function unsupported(ctx)
t_use(ctx);
t_error(@() TableVar().load('subject', 1), 'scistack:corruptObject', 'TableVar', 'Arrow stream');
end

function bytes_kind(ctx)
t_use(ctx);
r = BytesVar().load('subject', 1);
t_equal(r.data, uint8([0; 1; 2; 254; 255]), 'bytes');
oids = jsondecode(fileread(fullfile(ctx.fixture, 'expected', 'oids.json')));
t_equal(scistack.read_object(ctx.fixture, oids.code), ...
    sprintf('def f(x):\n    return x\n'), 'code');
end

function compressed(ctx)
t_use(ctx);
oids = jsondecode(fileread(fullfile(ctx.fixture, 'expected', 'oids.json')));
path = @(o) fullfile(ctx.fixture, '.scistack', 'objects', o(1:2), o(3:end));
z = t_read(path(oids.zeros_zstd));
t_equal(z(1:4), uint8([40, 181, 47, 253]), 'zstd magic');
raw = t_read(path(oids.ramp_raw));
t_equal(char(raw(1:4)), 'npy ', 'raw header');
t_equal(Compressed().load('subject', 1, 'session', 'zstd').data, zeros(4096, 1), 'zstd npy');
t_equal(Compressed().load('subject', 1, 'session', 'raw').data, ...
    int16(reshape(0:4095, 64, 64)'), 'raw npy');
t_equal(Compressed().load('subject', 1, 'session', 'json').data, ...
    struct('ramp', {num2cell(0:299)}), 'zstd json');
all = Compressed().load('subject', 1);           % two zstd objects: one batch of zstd
t_equal(cellfun(@(r) r.metadata.session, all, 'UniformOutput', false), ...
    {'json'; 'raw'; 'zstd'}, 'sessions');
t_equal(all{3}.data, zeros(4096, 1), 'batch-inflated npy');
t_equal(all{1}.data.ramp{300}, 299, 'batch-inflated json');
end

function broken(ctx)
t_use(ctx);
oids = jsondecode(fileread(fullfile(ctx.fixture, 'expected', 'oids.json')));
t_error(@() Broken().load('subject', 1, 'session', 'badlen'), 'scistack:corruptObject', ...
    'Broken', oids.corrupt_len, 'header says');
t_error(@() Broken().load('subject', 1, 'session', 'missing'), 'scistack:objectNotFound', ...
    'Broken', oids.missing);
t_error(@() Broken().load('subject', 1, 'session', 'badoid'), 'scistack:invalidOid', ...
    '../../../etc/passwd');
t_error(@() Broken().load('subject', 1, 'session', 'badheader'), 'scistack:corruptObject', ...
    'header');
t_error(@() scistack.read_object(ctx.fixture, upper(oids.missing)), 'scistack:invalidOid');
t_error(@() scistack.read_object(ctx.fixture, 42), 'scistack:invalidOid');
end

function configure(ctx)
db = scistack.configure_database(fullfile(ctx.fixture, 'gait.duckdb'), {'subject', 'session'});
t_equal(db.schema_keys, {'subject', 'session'}, 'keys');
t_equal(db.root, ctx.fixture, 'root is the folder of the .duckdb file');
db = scistack.configure_database(ctx.fixture, {'subject', 'session'});
t_equal(db.root, ctx.fixture, 'a folder works too');
t_error(@() scistack.configure_database(ctx.fixture, {'subject'}), ...
    'scistack:schemaMismatch', '''subject'', ''session''');
t_error(@() scistack.configure_database(ctx.fixture, {'session', 'subject'}), ...
    'scistack:schemaMismatch');
t_error(@() scistack.configure_database(ctx.fixture, {'subject', 'bad key'}), ...
    'scistack:badArgument');
root = tempname();
mkdir(root);
db = scistack.configure_database(fullfile(root, 'new.duckdb'), {'a', 'b', 'c'});
t_equal(db.schema_keys, {'a', 'b', 'c'}, 'no config.json yet: any keys');
rmdir(root, 's');
root = tempname();  % a lab project whose PostgreSQL is down: mirroring it fails clearly
mkdir(fullfile(root, '.scistack'));
fid = fopen(fullfile(root, '.scistack', 'config.json'), 'w');
fprintf(fid, '{"db":"gait.duckdb","format":1,"schema_keys":["subject"],"shared":"postgresql://127.0.0.1:1/gait","objects":"s3://lab/gait"}\n');
fclose(fid);
t_error(@() scistack.configure_database(fullfile(root, 'gait.duckdb'), {'subject'}), ...
    'scistack:labSync', 'postgresql://127.0.0.1:1/gait', 'credentials');
rmdir(root, 's');
t_use(ctx);
end

function package_class(ctx)
t_use(ctx);
t_equal(Trial().variable_name(), 'Trial', 'plain class');
root = tempname();
mkdir(fullfile(root, '+lab'));
fid = fopen(fullfile(root, '+lab', 'Trial.m'), 'w');
fprintf(fid, 'classdef Trial < scistack.BaseVariable\nend\n');
fclose(fid);
addpath(root);
cleanup = onCleanup(@() rmpath(root));
t_equal(lab.Trial().variable_name(), 'Trial', 'package class');
r = lab.Trial().load('subject', 3);
t_equal(r.data, 's3-v1', 'loads the same variable');
end
