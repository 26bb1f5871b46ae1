function cases = test_journal(ctx) %#ok<INUSD>
%TEST_JOURNAL Folding refs.log: versions, deletes, torn last line, growth, corruption.
cases = {
    'fold: highest surviving version per (var, addr, vkeys)', @fold
    'a last line without a newline is ignored', @torn_line
    'call/run lines and nested "addr"/"var" keys are not records', @other_lines
    'chunked parsing gives the same state', @chunked
    'cache: unchanged file reused, appended lines picked up, rewrite re-read', @growth
    'unreadable complete lines are skipped with a warning naming them', @corrupt
    'missing or empty journal: no records', @empty
    };
end

function S = state(ctx)
S = scistack.internal.journal(ctx.fixture);
end

function i = put_index(S, var, addr, version)
i = find(strcmp(S.P.var, var) & strcmp(S.P.addr, addr) & S.P.version == version);
end

function fold(ctx)
S = state(ctx);
pre1 = '{"session":"pre","subject":1}';
post1 = '{"session":"post","subject":1}';
t_assert(~S.current(put_index(S, 'Trial', pre1, 1)), 'pre v1 is superseded');
t_assert(S.current(put_index(S, 'Trial', pre1, 2)), 'pre v2 is current');
t_assert(S.deleted(put_index(S, 'Trial', post1, 2)), 'post v2 is deleted');
t_assert(S.current(put_index(S, 'Trial', post1, 1)), 'post v1 is current again');
pre2 = '{"session":"pre","subject":2}';
t_assert(S.current(put_index(S, 'Trial', pre2, 1)) && S.current(put_index(S, 'Trial', pre2, 2)), ...
    'two version-key variants are both current');
post2 = '{"session":"post","subject":2}';
t_assert(~any(S.current(put_index(S, 'Trial', post2, 1))), 'deleted only version: nothing current');
many = strcmp(S.P.var, 'Many');
t_equal(sum(many & S.current), 2000, 'Many: one current record per address');
t_equal(sum(many), 2200, 'Many: 2200 puts');
end

function torn_line(ctx)
S = state(ctx);
t_equal(sum(S.P.version == 3 & strcmp(S.P.var, 'Trial')), 0, 'torn version 3 is not read');
bytes = t_read(fullfile(ctx.fixture, '.scistack', 'refs.log'));
t_assert(bytes(end) ~= 10, 'fixture ends with a torn line');
t_equal(S.offset, find(bytes == 10, 1, 'last'), 'offset stops after the last newline');
end

function other_lines(ctx)
S = state(ctx);
t_assert(~any(strcmp(S.P.var, 'Fake')), 'a "var" inside params is not a record');
i = find(strcmp(S.P.var, 'Trial') & strcmp(S.P.vkeys, '{"k":[1,{"vkeys":2}]}'));
t_equal(numel(i), 1, 'vkeys holding a nested "vkeys" key');
t_equal(S.P.addr{i}, '{"session":"a{,\"}","subject":4}', 'addr with braces in a string');
t_equal(S.nlines, numel(find(t_read(fullfile(ctx.fixture, '.scistack', 'refs.log')) == 10)), ...
    'every complete line counted');
end

function chunked(ctx)
S = state(ctx);
for chunk = [8192, 65536]
    C = scistack.internal.journal(ctx.fixture, chunk);
    t_assert(isequal(C.P, S.P) && isequal(C.current, S.current) && ...
        isequal(C.deleted, S.deleted), 'chunk size %d changes the state', chunk);
end
% chunks smaller than a line: one line at a time (on the first 150 lines)
root = tempname();
mkdir(fullfile(root, '.scistack'));
bytes = t_read(fullfile(ctx.fixture, '.scistack', 'refs.log'));
nl = find(bytes == 10);
fid = fopen(fullfile(root, '.scistack', 'refs.log'), 'w');
fwrite(fid, bytes(1:nl(150)));
fclose(fid);
A = scistack.internal.journal(root, 100);
B = scistack.internal.journal(root);
t_assert(isequal(A.P, B.P) && isequal(A.current, B.current), 'one-line chunks');
t_equal(A.nlines, 150, 'lines');
rmdir(root, 's');
end

function growth(ctx)
root = t_copy_project(ctx);
t_use(ctx, root);
log = fullfile(root, '.scistack', 'refs.log');
S1 = scistack.internal.journal(root);
S2 = scistack.internal.journal(root);
t_equal(S2.offset, S1.offset, 'cached');
% complete the torn line's journal with a new record (as Python appends it)
r = Trial().load('subject', 3);
line = scistack.encode_json(struct('addr', struct('subject', int64(77)), 'call', [], ...
    'kind', 'json', 'oid', r.oid, 'op', 'put', 'params', struct(), 'summary', 'str', ...
    't', '2026-11-21T07:00:00.000000Z', 'var', 'Trial', 'version', int64(1), ...
    'vkeys', struct()));
fid = fopen(log, 'a');
fwrite(fid, [10, uint8(line), 10]);   % terminates the torn line, then a good record
fclose(fid);
lastwarn('');
S3 = scistack.internal.journal(root);
[msg, id] = lastwarn();
t_equal(id, 'scistack:corruptJournal', 'warning id');
t_assert(~isempty(strfind(msg, sprintf('line %d', S1.nlines + 1))), 'names the line: %s', msg);
t_equal(S3.nlines, S1.nlines + 2, 'both new lines counted');
r77 = Trial().load('subject', 77);
t_equal(r77.data, 's3-v1', 'appended record loads');
% append one more line: read incrementally
line2 = strrep(line, '"subject":77', '"subject":78');
fid = fopen(log, 'a');
fwrite(fid, [uint8(line2), 10]);
fclose(fid);
r78 = Trial().load('subject', 78);
t_equal(r78.data, 's3-v1', 'second appended record loads');
S4 = scistack.internal.journal(root);
t_equal(S4.nlines, S3.nlines + 1, 'one line parsed');
% a rewritten, shorter journal is re-read from the start
bytes = t_read(log);
nl = find(bytes == 10);
fid = fopen(log, 'w');
fwrite(fid, bytes(1:nl(end - 1)));
fclose(fid);
S5 = scistack.internal.journal(root);
t_equal(S5.offset, nl(end - 1), 'whole shorter file read');
t_equal(S5.nlines, S4.nlines - 1, 'line count');
t_error(@() Trial().load('subject', 78), 'scistack:notFound');
rmdir(root, 's');
end

function corrupt(ctx) %#ok<INUSD>
root = tempname();
mkdir(fullfile(root, '.scistack'));
good = ['{"addr":{"subject":1},"kind":"json","oid":"ab","op":"put","t":"x","var":"A",', ...
    '"version":1,"vkeys":{}}'];
fid = fopen(fullfile(root, '.scistack', 'refs.log'), 'w');
fprintf(fid, '%s\n', good);
fprintf(fid, '%s\n', '{"addr":{"subject":1},"kind":"json","oid":"ab","op":"put"');
fprintf(fid, '%s\n', '{"addr":{"subject":1},"op":"put","var":"A","version":2}');
fprintf(fid, '%s\n', '{"addr":{"subject":1},"kind":"js');
fprintf(fid, '%s\n', strrep(good, '"version":1', '"version":3'));
fclose(fid);
lastwarn('');
S = scistack.internal.journal(root);
[msg, id] = lastwarn();
t_equal(id, 'scistack:corruptJournal', 'warning id');
t_equal(S.P.version', [1, 3], 'the two good lines are read');
t_equal(S.nlines, 5, 'five lines');
t_assert(~isempty(strfind(msg, 'line 3')), 'the warning names line 3: %s', msg);
rmdir(root, 's');
end

function empty(ctx) %#ok<INUSD>
root = tempname();
mkdir(fullfile(root, '.scistack'));
S = scistack.internal.journal(root);
t_equal(numel(S.P.var), 0, 'no journal file');
fid = fopen(fullfile(root, '.scistack', 'refs.log'), 'w');
fclose(fid);
S = scistack.internal.journal(root);
t_equal(numel(S.P.var), 0, 'empty journal file');
scistack.configure_database(root, {'subject', 'session'});
t_error(@() Trial().load('subject', 1), 'scistack:notFound', 'holds no values');
t_equal(size(Trial().load_all()), [0, 1], 'load_all of nothing');
rmdir(root, 's');
end
