function due = lab_refreshed(root, now_done)
%LAB_REFRESHED Whether a lab project's journal mirror is due for a refresh (get), or note
%   that it was just refreshed (NOW_DONE true). Due when older than SCISTACK_LAB_REFRESH
%   seconds (default 5; 0: before every read): a colleague's new save shows up that much later.
persistent when
if isempty(when)
    when = containers.Map('KeyType', 'char', 'ValueType', 'double');
end
if nargin >= 2 && now_done
    when(root) = scistack.internal.unix_time();
    due = false;
    return
end
limit = str2double(getenv('SCISTACK_LAB_REFRESH'));
if isnan(limit)
    limit = 5;
end
due = ~isKey(when, root) || scistack.internal.unix_time() - when(root) >= limit;
end
