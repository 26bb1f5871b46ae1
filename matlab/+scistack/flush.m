function oids = flush()
%FLUSH Record the saves queued by save (called without an output) with one Python call.
%   RawEMG().save(x, ...) as a statement only writes the value's files under
%   <project>/.scistack/queue (no Python start: fast); they are recorded here, in save
%   order, by one `scistack ingest <project>/.scistack/queue`. flush runs by itself before
%   every read (load, load_all, list_versions, provenance), delete, for_each, save with an
%   output, configure_database and (Octave) at exit; call it yourself before reading the
%   project from Python. Returns the recorded oids. A queued save Python refuses (save checks
%   what it can first) does not block the others: it is moved whole to
%   <project>/.scistack/rejected/<id>/ and named in a scistack:saveRejected warning.
oids = cell(1, 0);
cfg = scistack.internal.project();
queue = fullfile(cfg.root, '.scistack', 'queue');
if ~scistack.internal.queue_state(cfg.root)
    return
end
[status, out, err, cmd] = scistack.internal.run_cli('ingest', queue, cfg.root);
if status ~= 0
    error('scistack:ingestFailed', ['`%s` failed (exit %d):\n%s\nThe queued values are ', ...
        'kept in %s; fix the problem and call scistack.flush() (or run that command)'], ...
        cmd, status, strtrim([err, ' ', out]), queue);
end
scistack.internal.queue_state(cfg.root, false);
rejected = strfind(err, 'a queued save was not recorded');
if ~isempty(rejected)   % set aside by Python (kept in .scistack/rejected): said once, here
    warning('scistack:saveRejected', '%s', strtrim(err(rejected(1):end)));
end
oids = regexp(out, '(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])', 'match');
end
