function [sel, metas, S, pinned] = select_records(cfg, var, qkeys, qvals, version)
%SELECT_RECORDS The puts of variable VAR that match a query, sorted by the schema keys.
%   A query pair (key, value) matches a record whose addr or version keys hold KEY with an
%   equal value: numbers match numbers (1 matches 1 and 1.0, not '1'), char matches
%   strings, logical matches true/false, [] matches null (and, for a version key, a record
%   saved without that key, as Python's note=None does); a cell or a numeric vector
%   matches any of its elements. Without VERSION only current records are candidates;
%   with VERSION (a number) the surviving puts with that version number.
%   PINNED is true when every matching record's address keys are all in the query (the
%   query names one address rather than a set of them).
S = scistack.internal.journal(cfg.root);
invar = strcmp(S.P.var, var);
if isempty(version)
    cand = find(invar & S.current);
elseif ischar(version)   % 'any': every put, deleted and superseded ones too
    cand = find(invar);
else
    cand = find(invar & ~S.deleted & S.P.version == version);
end
X = column_index(S, var, version, cand);
metas = X.metas;
mask = true(numel(cand), 1);
for q = 1:numel(qkeys)
    c = find(strcmp(X.keys, qkeys{q}) | strcmp(X.names, qkeys{q}), 1);
    if isempty(c)
        mask(:) = false;
        break
    end
    tf = matches(X.cols{c}, qvals{q});
    if isnumeric(qvals{q}) && isempty(qvals{q}) && ~any(strcmp(cfg.schema_keys, qkeys{q}))
        tf = tf | ~X.cols{c}.has;   % a version key: [] names the variant saved without it
    end
    mask = mask & tf;
end
sel = cand(mask);
metas = metas(mask);
pinned = true;
for r = 1:numel(metas)
    m = metas(r);
    if ~all(ismember(m.keys(1:m.naddr), qkeys) | ismember(m.names(1:m.naddr), qkeys))
        pinned = false;
        break
    end
end
order = sort_order(metas, cfg.schema_keys, S, sel);
sel = sel(order);
metas = metas(order);
end

function X = column_index(S, var, version, cand)
% The candidates' keys as columns (cached per variable and journal state in S.meta), so a
% query is a few vector comparisons however many records the variable has.
if ischar(version)
    spec = version;
else
    spec = sprintf('%d', version);
end
key = sprintf('#columns|%s|%s|%d', var, spec, S.nlines);
if isKey(S.index, key)
    X = S.index(key);
    return
end
metas = scistack.internal.meta_of(S, cand);
n = numel(metas);
if n == 0
    X = struct('metas', {metas}, 'keys', {{}}, 'names', {{}}, 'cols', {{}});
    return
end
counts = cellfun('prodofsize', {metas.keys});
allk = [metas.keys];
alln = [metas.names];
allv = [metas.vals];
owner = repelem((1:n)', counts(:));
[keys, first] = unique(allk, 'first');
[first, ord] = sort(first);
keys = keys(ord);
[~, kidx] = ismember(allk, keys);
keys = keys(:)';
names = alln(first);
names = names(:)';
cols = cell(1, numel(keys));
for c = 1:numel(keys)
    at = kidx(:) == c;
    r = owner(at);
    v = allv(at);
    v = v(:);
    col = struct('has', false(n, 1), 'isnum', false(n, 1), 'ischr', false(n, 1), ...
        'islog', false(n, 1), 'isnull', false(n, 1), 'isint', false(n, 1), ...
        'num', NaN(n, 1), 'str', {repmat({''}, n, 1)}, 'vals', {cell(n, 1)});
    col.has(r) = true;
    col.vals(r) = v;
    one = cellfun('prodofsize', v) == 1;
    chr = cellfun('isclass', v, 'char');
    lgc = cellfun('islogical', v) & one;
    num = cellfun('isnumeric', v);
    nul = num & cellfun('isempty', v);
    num = num & one;
    col.ischr(r(chr)) = true;
    col.str(r(chr)) = v(chr);
    col.islog(r(lgc)) = true;
    col.isnull(r(nul)) = true;
    col.isnum(r(num)) = true;
    both = lgc | num;
    if any(both)
        col.num(r(both)) = cellfun(@double, v(both));
        col.isint(r(num)) = cellfun(@isinteger, v(num));
    end
    cols{c} = col;
end
X = struct('metas', {metas}, 'keys', {keys}, 'names', {names}, 'cols', {cols});
S.index(key) = X;
end

function tf = matches(col, want)
if iscell(want)
    tf = false(size(col.has));
    for k = 1:numel(want)
        tf = tf | matches(col, want{k});
    end
elseif ischar(want)
    tf = col.ischr & strcmp(col.str, want);
elseif islogical(want) && isscalar(want)
    tf = col.islog & col.num == double(want);
elseif isnumeric(want) && isempty(want)
    tf = col.isnull;
elseif isnumeric(want)
    tf = col.isnum & ismember(col.num, double(want(:)));
    % 64-bit integers beyond 2^53: confirm with an exact comparison
    exact = find(tf & (col.isint | any(isinteger(want(:)))));
    for r = exact(:)'
        tf(r) = any(col.vals{r} == want(:));
    end
else
    tf = false(size(col.has));
end
end

function order = sort_order(metas, schema, S, sel)
% Rows sorted by each schema key in schema order (numbers before text, a missing key
% last), then by version keys, then by version.
n = numel(metas);
if n <= 1
    order = 1:n;
    return
end
M = zeros(n, 2 * numel(schema) + 2);
for k = 1:numel(schema)
    kind = 3 * ones(n, 1);
    num = zeros(n, 1);
    txt = repmat({''}, n, 1);
    for r = 1:n
        m = metas(r);
        j = find(strcmp(m.keys(1:m.naddr), schema{k}), 1);
        if isempty(j)
            continue
        end
        v = m.vals{j};
        if isnumeric(v) && isscalar(v)
            kind(r) = 0;
            num(r) = double(v);
        elseif islogical(v) && isscalar(v)
            kind(r) = 1;
            num(r) = double(v);
        elseif ischar(v)
            kind(r) = 2;
            txt{r} = v;
        end
    end
    istext = kind == 2;
    if any(istext)
        [~, ~, rank] = unique(txt(istext));
        num(istext) = rank;
    end
    M(:, 2 * k - 1) = kind;
    M(:, 2 * k) = num;
end
[~, ~, vrank] = unique(S.P.vkeys(sel));
vrank(strcmp(S.P.vkeys(sel), '{}')) = 0;
M(:, end - 1) = vrank(:);
M(:, end) = S.P.version(sel);
[~, order] = sortrows(M);
order = order(:)';
end
