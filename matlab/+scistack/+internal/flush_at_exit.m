function flush_at_exit()
%FLUSH_AT_EXIT Octave's atexit hook: record queued saves of the current project. Failures
%   are only reported: the queue stays on disk for the next session.
try
    scistack.flush();
catch e
    fprintf(2, 'scistack: queued saves not recorded at exit (%s); they stay queued\n', ...
        e.message);
end
end
