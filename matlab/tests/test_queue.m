function cases = test_queue(ctx) %#ok<INUSD>
%TEST_QUEUE Saves called as statements are queued on disk (no Python start) and recorded,
%   in order, by one ingest at the next flush (explicit, or before a read).
cases = {
    'queued saves: no ingest per save, recorded in order at the next read', @queued
    'a failed flush keeps the queue; the next flush records it', @failed_flush
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
