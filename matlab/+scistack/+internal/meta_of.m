function M = meta_of(S, idx)
%META_OF The decoded addr + vkeys of the puts IDX of journal state S, as an N x 1 struct
%   array with fields keys (raw JSON keys: addr keys, then version keys), names (the same
%   keys as valid MATLAB field names), vals (decoded values) and naddr (how many keys are
%   addr keys). Decoded records are cached in S.meta (a handle), keyed by their JSON text.
idx = idx(:);
empty = struct('keys', {}, 'names', {}, 'vals', {}, 'naddr', {});
if isempty(idx)
    M = reshape(empty, 0, 1);
    return
end
keys = strcat(S.P.addr(idx), {char(0)}, S.P.vkeys(idx));
[have, cached] = S.meta.get_many(keys);
if ~all(have)
    [missing, first] = unique(keys(~have));
    todo = idx(~have);
    made = decode_records(S.P.addr(todo(first)), S.P.vkeys(todo(first)));
    S.meta.put_many(missing, num2cell(made));
    [~, loc] = ismember(keys(~have), missing);
    cached(~have) = num2cell(made(loc));
end
M = vertcat(cached{:});
end

function made = decode_records(atext, vtext)
% Records for pairs of addr and vkeys texts, decoding each distinct object text once.
atext = atext(:);
vtext = vtext(:);
texts = unique([atext; vtext]);
[dkeys, dvals] = decode_objects(texts);
% field names, computed once per distinct key
flat = [dkeys{:}];
ukeys = unique(flat);
unames = field_names(ukeys);
mangled = ~isequal(ukeys, unames);
[~, loc] = ismember(flat, ukeys);
dnames = mat2cell(unames(loc), 1, cellfun('prodofsize', dkeys(:)'))';
[~, ai] = ismember(atext, texts);
[~, vi] = ismember(vtext, texts);
K = dkeys(ai);
N = dnames(ai);
V = dvals(ai);
A = num2cell(cellfun('prodofsize', K));
for k = find(~strcmp(vtext, '{}'))'
    K{k} = [K{k}, dkeys{vi(k)}];
    V{k} = [V{k}, dvals{vi(k)}];
    names = [N{k}, dnames{vi(k)}];
    if mangled && numel(unique(names)) < numel(names)
        names = matlab.lang.makeUniqueStrings(names);
    end
    N{k} = names;
end
made = struct('keys', K, 'names', N, 'vals', V, 'naddr', A);
made = made(:);
end

function [dkeys, dvals] = decode_objects(texts)
% Flat JSON objects -> keys and values (1 x k cells): jsondecode in one call for the plain
% ones (short integers, strings, booleans, null, valid key names); the exact parser for any
% object that jsondecode could change (floats, big integers, lists, nested objects, \u
% escapes, keys that are not MATLAB names).
n = numel(texts);
dkeys = cell(n, 1);
dvals = cell(n, 1);
pattern = ['\d{16,}|\d[.eE]|\[|\{[^{}]*\{|\\u|[{,]"[^A-Za-z]|[{,]"[A-Za-z]\w*[^\w"]', ...
    '|[{,]"\w{64,}"|[{,]"(end|if|for|while|function|return|else|elseif|switch|case|', ...
    'otherwise|try|catch|global|persistent|break|continue|classdef|methods|properties|', ...
    'events|enumeration|parfor|spmd)"'];
% one regexp over all texts joined by newlines (which JSON text never holds raw)
joined = strjoin(texts(:)', char(10));
hits = regexp(joined, pattern, 'start');
ends = cumsum(cellfun('length', texts(:)') + 1);
risky = false(n, 1);
if ~isempty(hits)
    risky(unique(scistack.internal.count_le(ends, hits - 1) + 1)) = true;
end
plain = strcmp(texts, '{}');
dkeys(plain) = {cell(1, 0)};
dvals(plain) = {cell(1, 0)};
risky = risky & ~plain(:);
for k = find(risky)'
    p = scistack.internal.json_parse(texts{k}, [], true);
    dkeys{k} = p.keys(:)';
    dvals{k} = p.vals(:)';
end
safe = find(~risky & ~plain(:));
if isempty(safe)
    return
end
J = jsondecode(['[', strjoin(texts(safe)', ','), ']']);
if isstruct(J)
    % every object has the same keys: one struct array
    f = fieldnames(J)';
    dkeys(safe) = {f};
    if isempty(f)
        dvals(safe) = {cell(1, 0)};
    else
        V = reshape(struct2cell(J(:)), numel(f), []);
        dvals(safe) = num2cell(V', 2);
    end
else
    for j = 1:numel(safe)
        s = J{j};
        dkeys{safe(j)} = fieldnames(s)';
        dvals{safe(j)} = struct2cell(s)';
    end
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
