function pending = queue_state(root, set)
%QUEUE_STATE Whether ROOT's save queue may hold unrecorded saves: QUEUE_STATE(ROOT, TRUE)
%   after a deferred save, FALSE after a flush. A project not seen in this session is
%   looked at on disk once (saves left by a session that was killed are recorded then).
persistent known
if isempty(known)
    known = containers.Map('KeyType', 'char', 'ValueType', 'logical');
    if exist('OCTAVE_VERSION', 'builtin') ~= 0
        atexit('scistack.internal.flush_at_exit');
    end
end
if nargin > 1
    known(root) = set;
elseif ~isKey(known, root)
    d = dir(fullfile(root, '.scistack', 'queue'));
    known(root) = any([d.isdir] & ~ismember({d.name}, {'.', '..'}));
end
pending = known(root);
end
