function order = meta_order(m, schema_keys)
%META_ORDER Positions of a record's keys for display: addr keys in schema order, then any
%   other addr keys, then the version keys.
order = [];
for k = 1:numel(schema_keys)
    j = find(strcmp(m.keys(1:m.naddr), schema_keys{k}), 1);
    order = [order, j]; %#ok<AGROW>
end
order = [order, setdiff(1:numel(m.keys), order, 'stable')];
end
