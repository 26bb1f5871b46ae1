function [sel, metas, S, pinned] = select_records(cfg, var, qkeys, qvals, version)
%SELECT_RECORDS The puts of variable VAR that match a query, sorted by the schema keys.
%   A query pair (key, value) matches a record whose addr or version keys hold KEY with an
%   equal value: numbers match numbers (1 matches 1 and 1.0, not '1'), char matches
%   strings, logical matches true/false, [] matches null; a cell or a numeric vector
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
metas = scistack.internal.meta_of(S, cand);
mask = true(numel(cand), 1);
for q = 1:numel(qkeys)
    for r = find(mask)'
        m = metas{r};
        j = find(strcmp(m.keys, qkeys{q}) | strcmp(m.names, qkeys{q}), 1);
        mask(r) = ~isempty(j) && matches(m.vals{j}, qvals{q});
    end
end
sel = cand(mask);
metas = metas(mask);
pinned = true;
for r = 1:numel(metas)
    m = metas{r};
    if ~all(ismember(m.keys(1:m.naddr), qkeys) | ismember(m.names(1:m.naddr), qkeys))
        pinned = false;
        break
    end
end
order = sort_order(metas, cfg.schema_keys, S, sel);
sel = sel(order);
metas = metas(order);
end

function tf = matches(stored, want)
if iscell(want)
    tf = false;
    for k = 1:numel(want)
        if matches(stored, want{k})
            tf = true;
            return
        end
    end
elseif ischar(want)
    tf = ischar(stored) && strcmp(stored, want);
elseif islogical(want) && isscalar(want)
    tf = islogical(stored) && isscalar(stored) && stored == want;
elseif isnumeric(want) && isempty(want)
    tf = isnumeric(stored) && isempty(stored);
elseif isnumeric(want)
    tf = isnumeric(stored) && isscalar(stored) && any(stored == want(:));
else
    tf = false;
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
        m = metas{r};
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
