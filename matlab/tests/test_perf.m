function cases = test_perf(ctx) %#ok<INUSD>
%TEST_PERF Costs that users feel: folding a large journal, the first and later queries,
%   and a cached (unchanged) journal. Bounds are generous (CI machines are small); the
%   measured times are printed.
cases = {
    '20,000-line journal: fold, first query, later queries, cached reuse', @journal_costs
    };
end

function journal_costs(ctx)
root = tempname();
mkdir(fullfile(root, '.scistack'));
t_use(ctx);
r = Trial().load('subject', 3);   % an existing object to point at
n = 20000;
i = (0:n - 1)';
fmt = ['{"addr":{"session":"s%d","subject":%d},"call":null,"kind":"json","oid":"%s",', ...
    '"op":"put","params":{"f.low":20},"summary":"str","t":"2026-11-21T06:00:00.000000Z",', ...
    '"var":"V%d","version":%d,"vkeys":{}}\n'];
args = [num2cell(mod(i, 7)), num2cell(floor(i / 35)), repmat({r.oid}, n, 1), ...
    num2cell(mod(i, 5)), num2cell(1 + mod(i, 2))]';
fid = fopen(fullfile(root, '.scistack', 'refs.log'), 'w');
fprintf(fid, fmt, args{:});
fclose(fid);
copy_object(ctx.fixture, root, r.oid);
scistack.configure_database(root, {'subject', 'session'});
t0 = tic;
S = scistack.internal.journal(root);
t_fold = toc(t0);
t_equal(numel(S.P.var), n, 'puts');
t0 = tic;
S = scistack.internal.journal(root); %#ok<NASGU>
t_cached = toc(t0);
t0 = tic;
a = V1().load('subject', 10, 'session', 's1');
t_first = toc(t0);
t_equal(a.data, 's3-v1', 'data');
t0 = tic;
for k = 1:10
    b = V1().load('subject', k, 'session', 's1'); %#ok<NASGU>
end
t_next = toc(t0) / 10;
fprintf('     fold %.2f s, cached %.4f s, first query %.2f s, next %.1f ms\n', ...
    t_fold, t_cached, t_first, 1000 * t_next);
t_assert(t_fold < 20, 'folding 20,000 lines took %.1f s', t_fold);
t_assert(t_cached < 0.5, 'an unchanged journal took %.2f s', t_cached);
t_assert(t_first < 20, 'the first query took %.1f s', t_first);
t_assert(t_next < 1, 'a later query took %.2f s', t_next);
rmdir(root, 's');
t_use(ctx);
end

function copy_object(from, to, oid)
d = fullfile(to, '.scistack', 'objects', oid(1:2));
mkdir(d);
copyfile(fullfile(from, '.scistack', 'objects', oid(1:2), oid(3:end)), d);
end
