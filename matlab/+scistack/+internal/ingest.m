function oids = ingest(manifest, folder, n)
%INGEST Run `<SCISTACK_CLI> ingest MANIFEST` (SCISTACK_CLI defaults to 'scistack') and
%   return the N oids it prints (one 64-hex oid per item, in manifest order). The staging
%   folder is removed after a successful ingest and kept (named in the error) otherwise.
root = fileparts(fileparts(fileparts(folder)));   % <root>/.scistack/staging/<id>
[status, out, err, cmd] = scistack.internal.run_cli('ingest', manifest, root);
if status ~= 0
    error('scistack:ingestFailed', ['`%s` failed (exit %d):\n%s\nThe staged values are ', ...
        'kept in %s; once the Python scistack is installed (pip install scistack, or set ', ...
        'SCISTACK_CLI to the command that runs it) retry with: scistack ingest %s'], ...
        cmd, status, strtrim([err, ' ', out]), folder, manifest);
end
oids = regexp(out, '(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])', 'match');
if numel(oids) < n
    error('scistack:ingestFailed', ['`%s` succeeded but printed %d oids for %d values:\n', ...
        '%s'], cmd, numel(oids), n, strtrim(out));
end
oids = oids(end - n + 1:end);
[ok, msg] = rmdir(folder, 's');
if ~ok
    warning('scistack:io', 'could not remove the staging folder %s: %s', folder, msg);
end
end
