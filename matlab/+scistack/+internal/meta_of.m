function metas = meta_of(S, idx)
%META_OF The decoded addr + vkeys of the puts IDX of journal state S, one struct each with
%   fields keys (raw JSON keys: addr keys, then version keys), names (the same keys as valid
%   MATLAB field names), vals (decoded values) and naddr (how many keys are addr keys).
%   Decoded objects are cached in S.meta (a handle), keyed by their canonical JSON text.
idx = idx(:);
if isempty(idx)
    metas = cell(0, 1);
    return
end
keys = strcat(S.P.addr(idx), {char(0)}, S.P.vkeys(idx));
[have, metas] = S.meta.get_many(keys);
if ~all(have)
    missing = unique(keys(~have));
    parts = regexp(missing, char(0), 'split');
    atext = cellfun(@(p) p{1}, parts, 'UniformOutput', false);
    vtext = cellfun(@(p) p{2}, parts, 'UniformOutput', false);
    texts = unique([atext(:); vtext(:)]);
    decoded = decode_objects(texts);
    [~, ai] = ismember(atext, texts);
    [~, vi] = ismember(vtext, texts);
    % field names, computed once per distinct key
    ks = cellfun(@(d) d.keys(:)', decoded, 'UniformOutput', false);
    flat = [ks{:}];
    ukeys = unique(flat);
    unames = field_names(ukeys);
    mangled = ~isequal(ukeys, unames);
    [~, loc] = ismember(flat, ukeys);
    per = mat2cell(unames(loc), 1, cellfun('prodofsize', ks(:)'));
    for t = 1:numel(decoded)
        decoded{t}.names = per{t};
    end
    made = cell(numel(missing), 1);
    for k = 1:numel(missing)
        a = decoded{ai(k)};
        v = decoded{vi(k)};
        names = [a.names(:)', v.names(:)'];
        if mangled && numel(unique(names)) < numel(names)
            names = matlab.lang.makeUniqueStrings(names);
        end
        made{k} = struct('keys', {[a.keys(:)', v.keys(:)']}, ...
            'names', {names}, 'vals', {[a.vals(:)', v.vals(:)']}, 'naddr', numel(a.keys));
    end
    S.meta.put_many(missing, made);
    [~, loc] = ismember(keys(~have), missing);
    metas(~have) = made(loc);
end
end

function out = decode_objects(texts)
% Flat JSON objects -> struct('keys', .., 'vals', ..): jsondecode in one call for the plain
% ones (short integers, strings, booleans, null, valid key names); the exact parser for any
% object that jsondecode could change (floats, big integers, lists, nested objects, \u
% escapes, keys that are not MATLAB names).
out = cell(numel(texts), 1);
pattern = ['\d{16,}|\d[.eE]|\[|\{[^{}]*\{|\\u|[{,]"[^A-Za-z]|[{,]"[A-Za-z]\w*[^\w"]', ...
    '|[{,]"\w{64,}"|[{,]"(end|if|for|while|function|return|else|elseif|switch|case|', ...
    'otherwise|try|catch|global|persistent|break|continue|classdef|methods|properties|', ...
    'events|enumeration|parfor|spmd)"'];
risky = ~cellfun('isempty', regexp(texts, pattern, 'once'));
for k = find(risky(:))'
    out{k} = scistack.internal.json_parse(texts{k}, [], true);
end
safe = find(~risky(:))';
if isempty(safe)
    return
end
J = jsondecode(['[', strjoin(texts(safe)', ','), ']']);
for j = 1:numel(safe)
    if iscell(J)
        s = J{j};
    else
        s = J(j);
    end
    out{safe(j)} = struct('keys', {fieldnames(s)'}, 'vals', {struct2cell(s)'});
end
end

function names = field_names(keys)
names = keys;
for k = 1:numel(keys)
    if ~scistack.internal.is_field_name(keys{k})
        names{k} = scistack.internal.field_name(keys{k});
    end
end

end
