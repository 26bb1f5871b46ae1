function lab_sync(root, oids)
%LAB_SYNC Bring a lab project's local mirror up to date: `scistack matlab-mirror` appends the
%   shared journal's new lines to .scistack/cache/refs.log and fetches the objects OIDS (a
%   cell array, with their children) into the local cache. MATLAB never talks to PostgreSQL
%   or S3 itself; a second read of an object finds it in the cache without this call.
if nargin < 2
    oids = {};
end
q = @scistack.internal.shell_quote;
args = cellfun(q, oids(:)', 'UniformOutput', false);
[status, out, err, cmd] = scistack.internal.run_cli(strjoin([{'matlab-mirror'}, args], ' '), '', root);
if status ~= 0
    error('scistack:labSync', ['%s failed (exit %d): %s. The lab project''s shared journal ', ...
        'or object store could not be read; check the network and the credentials in ', ...
        'this environment (PGPASSWORD / ~/.pgpass, AWS_*), then retry'], cmd, status, ...
        strtrim([err, ' ', out]));
end
scistack.internal.lab_refreshed(root, true);
end
