function cases = test_queue(ctx) %#ok<INUSD>
%TEST_QUEUE Saves called as statements are queued on disk (no Python start) and recorded,
%   in order, by one ingest at the next flush (explicit, or before a read).
cases = {
    'queued saves: no ingest per save, recorded in order at the next read', @queued
    'a failed flush keeps the queue; the next flush records it', @failed_flush
    'metadata Python refuses is refused by save, before anything is queued', @refused_at_save
    'a queued save Python refuses is set aside, the saves after it are recorded', @set_aside
    };
end

function root = fresh(ctx, name)
root = fullfile(ctx.fixture, name);
if exist(root, 'dir')
    rmdir(root, 's');
end
scistack.configure_database(fullfile(root, 'gait.duckdb'), {'subject', 'session'});
end

function queued(ctx)
root = fresh(ctx, 'queued');
old = getenv('SCISTACK_CLI');
setenv('SCISTACK_CLI', 'false');   % any Python call during the saves would fail
for k = 1:30
    SavedValue().save(k, 'subject', 1, 'session', 'pre');
end
setenv('SCISTACK_CLI', old);
q = dir(fullfile(root, '.scistack', 'queue'));
t_equal(sum(~ismember({q.name}, {'.', '..'})), 30, 'thirty queued folders');
r = SavedValue().load('subject', 1, 'session', 'pre');   % flushes first
t_equal(r.data, 30, 'the last save is current');
t_equal(r.version, 30, 'versions in save order');
q = dir(fullfile(root, '.scistack', 'queue'));
t_equal(sum(~ismember({q.name}, {'.', '..'})), 0, 'queue emptied');
end

function failed_flush(ctx)
fresh(ctx, 'queued2');
SavedValue().save(7, 'subject', 2, 'session', 'pre');
old = getenv('SCISTACK_CLI');
setenv('SCISTACK_CLI', 'false');
t_error(@() scistack.flush(), 'scistack:ingestFailed', 'kept in');
setenv('SCISTACK_CLI', old);
oids = scistack.flush();
t_equal(numel(oids), 1, 'recorded by the next flush');
t_equal(SavedValue().load('subject', 2, 'session', 'pre').data, 7, 'value');
end

function refused_at_save(ctx)
root = fresh(ctx, 'queued3');
long = repmat('a', 1, 1025);
bad = {{'subject', NaN}, 'subject', 'NaN never equals itself'; ...
    {'subject', -Inf}, 'subject', 'no infinity'; ...
    {'subject', 1, 'note', Inf}, 'note', 'not a finite number'; ...
    {'subject', 1, 'my note', 2}, 'my note', 'e.g. "my_note"'; ...
    {'subject', 1, 'Session', 'pre'}, 'Session', 'schema key "session" but for case'; ...
    {'subject', 1, 'summary', 'x'}, 'summary', 'reserved'; ...
    {'subject', long}, 'subject', '1025 characters'; ...
    {'subject', uint64(18446744073709551615)}, '18446744073709551615', 'beyond 64'};
for k = 1:size(bad, 1)
    args = bad{k, 1};
    t_error(@() SavedValue().save(1, args{:}), 'scistack:badArgument', bad{k, 2}, bad{k, 3});
end
t_error(@() save_with_output(args), 'scistack:badArgument', 'beyond 64');
q = dir(fullfile(root, '.scistack', 'queue'));
t_equal(sum(~ismember({q.name}, {'.', '..'})), 0, 'nothing queued');
SavedValue().save(1, 'subject', uint64(9223372036854775807), 'note', repmat('b', 1, 1024));
t_equal(numel(scistack.flush()), 1, 'the largest int64 and 1,024 characters are taken');
end

function oid = save_with_output(args)
oid = SavedValue().save(1, args{:});
end

function set_aside(ctx)
% a save queued by a client that did not check its metadata (written here by hand)
root = fresh(ctx, 'queued4');
SavedValue().save(1, 'subject', 1, 'session', 'pre');
SavedValue().save(2, 'subject', 2, 'session', 'pre');
q = dir(fullfile(root, '.scistack', 'queue'));
q = sort({q(~ismember({q.name}, {'.', '..'})).name});
manifest = fullfile(root, '.scistack', 'queue', q{1}, 'manifest.json');
text = strrep(fileread(manifest), '"subject":1', '"subject":{"$float":"nan"}');
fid = fopen(manifest, 'w');
fwrite(fid, text);
fclose(fid);
lastwarn('');
t_equal(SavedValue().load('subject', 2, 'session', 'pre').data, 2, 'the later save is recorded');
[msg, id] = lastwarn();
t_equal(id, 'scistack:saveRejected', 'said once, as a warning');
kept = fullfile(root, '.scistack', 'rejected', q{1});
t_assert(~isempty(strfind(msg, 'subject=nan')) && ~isempty(strfind(msg, kept)) && ...
    isempty(strfind(msg, '$float')), msg);
t_assert(exist(fullfile(kept, 'payload-0.bin'), 'file') == 2, 'its files are kept');
lastwarn('');
scistack.configure_database(fullfile(root, 'gait.duckdb'), {'subject', 'session'});
[~, id] = lastwarn();
t_equal(id, '', 'not said again');
end
