function not_found(cfg, S, var, qk, qv, version)
%NOT_FOUND Raise scistack:notFound for a query of VAR that matched nothing, naming the
%   query and what exists nearby.
q = scistack.internal.describe(qk, qv);
if isempty(q)
    q = '(no keys)';
end
if ~isempty(version)
    q = sprintf('%s, version=%d', q, version);
end
invar = strcmp(S.P.var, var);
if ~any(invar)
    names = unique(S.P.var);
    if isempty(names)
        there = 'the journal holds no values yet';
    else
        there = ['saved variables: ', strjoin(names(:)', ', ')];
    end
    error('scistack:notFound', ['%s: nothing matches %s: no value of %s is saved in %s ', ...
        '(%s). Check the class name and the project passed to configure_database'], ...
        var, q, var, cfg.root, there);
end
cand = find(invar & S.current);
if isempty(cand)
    error('scistack:notFound', ['%s: nothing matches %s: every saved value of %s has ', ...
        'been deleted'], var, q, var);
end
metas = scistack.internal.meta_of(S, cand);
% keys nobody has
allkeys = {};
for r = 1:numel(metas)
    allkeys = union(allkeys, metas(r).keys);
end
unknown = qk(~ismember(qk, allkeys));
if ~isempty(unknown)
    error('scistack:notFound', ['%s: nothing matches %s: no %s value has the key %s ', ...
        '(its keys: %s)'], var, q, var, strjoin(unknown, ', '), strjoin(allkeys, ', '));
end
% the nearest records: most query pairs matched
score = zeros(numel(metas), 1);
for r = 1:numel(metas)
    m = metas(r);
    for k = 1:numel(qk)
        j = find(strcmp(m.keys, qk{k}), 1);
        if ~isempty(j) && isequal(m.vals{j}, qv{k})
            score(r) = score(r) + 1;
        end
    end
end
[~, ord] = sort(-score);
ord = ord(1:min(5, numel(ord)));
near = cell(1, numel(ord));
for k = 1:numel(ord)
    m = metas(ord(k));
    o = scistack.internal.meta_order(m, cfg.schema_keys);
    near{k} = ['  ', scistack.internal.describe(m.keys(o), m.vals(o))];
    if ~isempty(version)
        near{k} = sprintf('%s (current version %d)', near{k}, S.P.version(cand(ord(k))));
    end
end
gone = '';
if isempty(version)
    [old, ~, ~] = scistack.internal.select_records(cfg, var, qk, qv, 'any');
    if ~isempty(old)
        vs = sprintf('%d, ', unique(S.P.version(old)));
        gone = sprintf(' (a value was saved there but deleted: version %s)', vs(1:end - 2));
    end
end
error('scistack:notFound', '%s: nothing matches %s%s. %d current values exist; nearest:\n%s', ...
    var, q, gone, numel(cand), strjoin(near, sprintf('\n')));
end
