function rec = make_record(cfg, S, i, m, var, raw)
%MAKE_RECORD The record of put I: data (the decoded object), metadata (addr keys in schema
%   order, then version keys), oid, version, created_at (the journal's UTC time text).
names = m.names;
order = scistack.internal.meta_order(m, cfg.schema_keys);
md = struct();
for k = order
    md.(names{k}) = m.vals{k};
end
if nargin < 6
    raw = [];
end
data = scistack.read_object(cfg.root, S.P.oid{i}, var, raw);
rec = struct('data', {data}, 'metadata', md, 'oid', S.P.oid{i}, ...
    'version', S.P.version(i), 'created_at', S.P.t{i});
end
