function [manifest, folder] = stage(cfg, var, values, addrs, vkeys)
%STAGE Write values as payload files plus manifest.json into a new staging folder
%   <root>/.scistack/staging/<id>/ for `scistack ingest` (format: matlab/README.md).
%   Top-level numeric/logical arrays (numel ~= 1, except []) become npy payloads; everything
%   else (scalars, char, cell, struct, containers.Map, []) canonical JSON, whose inner arrays
%   become child npy payloads referenced as {"$ref":"staged:payload-<n>.bin"}.
[~, token] = fileparts(tempname());
token = regexprep(token, '[^A-Za-z0-9_-]', '');
stamp = datestr(now, 'yyyymmddTHHMMSS'); %#ok<TNOW1,DATST>
folder = fullfile(cfg.root, '.scistack', 'staging', [stamp, '-', token]);
[ok, msg] = mkdir(folder);
if ~ok
    error('scistack:io', 'cannot create the staging folder %s: %s', folder, msg);
end
box = containers.Map('KeyType', 'char', 'ValueType', 'any');
box('n') = 0;
box('children') = {};
put_child = @(kind, bytes) put_payload(box, folder, kind, bytes, true);
items = cell(1, numel(values));
for k = 1:numel(values)
    [kind, bytes] = encode_value(values{k}, put_child);
    name = put_payload(box, folder, kind, bytes, false);
    items{k} = struct('addr', addrs{k}, 'kind', kind, 'payload', name, 'vkeys', vkeys{k});
end
m = struct();
m.children = box('children');
m.format = int64(1);
m.items = items;
m.schema_keys = cfg.schema_keys;
m.var = var;
m.writer = 'scistack-matlab';
manifest = fullfile(folder, 'manifest.json');
scistack.internal.write_bytes(manifest, [uint8(scistack.encode_json(m)), uint8(10)]);
end

function [kind, bytes] = encode_value(x, put_child)
if (isnumeric(x) || islogical(x)) && numel(x) ~= 1 && ...
        ~(isa(x, 'double') && isequal(size(x), [0, 0]))
    kind = 'npy';
    bytes = scistack.encode_npy(x);
else
    kind = 'json';
    bytes = uint8(scistack.encode_json(x, put_child));
end
end

function out = put_payload(box, folder, kind, bytes, is_child)
n = box('n');
box('n') = n + 1;
name = sprintf('payload-%d.bin', n);
scistack.internal.write_bytes(fullfile(folder, name), bytes);
if is_child
    c = box('children');
    c{end + 1} = struct('kind', kind, 'payload', name);
    box('children') = c;
    out = ['staged:', name];
else
    out = name;
end
end
