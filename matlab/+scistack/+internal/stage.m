function [manifest, folder] = stage(cfg, var, values, addrs, vkeys, parent)
%STAGE Write values as payload files plus manifest.json into a new staging folder
%   <root>/.scistack/staging/<id>/ for `scistack ingest` (format: matlab/README.md).
%   Top-level numeric/logical arrays (numel ~= 1, except []) become npy payloads; everything
%   else (scalars, char, cell, struct, containers.Map, []) canonical JSON, whose inner arrays
%   become child npy payloads referenced as {"$ref":"staged:payload-<n>.bin"}.
%   Everything is encoded before the folder is created, so a value that cannot be stored
%   leaves nothing behind. A Thunk result (a record with a call) is not encoded again: its
%   item names its stored oid and call, so the saved ref carries the call's lineage.
%   PARENT (default 'staging') is the folder under .scistack; 'queue' holds deferred saves,
%   named so that sorting by name is the order of the saves, with manifest.json written
%   last by rename (a folder without it is a save that has not returned).
if nargin < 6
    parent = 'staging';
end
persistent counter
if isempty(counter)
    counter = 0;
end
counter = counter + 1;
box = containers.Map('KeyType', 'char', 'ValueType', 'any');
box('names') = {};
box('kinds') = {};
box('bytes') = {};
box('child') = [];
put_child = @(kind, bytes) add_payload(box, kind, bytes, true);
items = cell(1, numel(values));
for k = 1:numel(values)
    if is_result(values{k})   % a Thunk's result: already stored; saved with its call
        items{k} = struct('addr', addrs{k}, 'call', values{k}.call, 'oid', ...
            values{k}.oid, 'vkeys', vkeys{k});
        continue
    end
    [kind, bytes] = scistack.internal.encode_value(values{k}, put_child);
    name = add_payload(box, kind, bytes, false);
    items{k} = struct('addr', addrs{k}, 'kind', kind, 'payload', name, 'vkeys', vkeys{k});
end
names = box('names');
kinds = box('kinds');
child = box('child');
children = cell(1, 0);
for k = find(child)
    children{end + 1} = struct('kind', kinds{k}, 'payload', names{k}); %#ok<AGROW>
end
m = struct();
m.children = children;
m.format = int64(1);
m.items = items;
m.schema_keys = cfg.schema_keys;
m.var = var;
m.writer = 'scistack-matlab';
text = scistack.encode_json(m);

[~, token] = fileparts(tempname());
token = regexprep(token, '[^A-Za-z0-9_-]', '');
stamp = datestr(now, 'yyyymmddTHHMMSSFFF'); %#ok<TNOW1,DATST>
folder = fullfile(cfg.root, '.scistack', parent, sprintf('%s-%08d-%s', stamp, counter, token));
[ok, msg] = mkdir(folder);
if ~ok
    error('scistack:io', 'cannot create the staging folder %s: %s', folder, msg);
end
payloads = box('bytes');
for k = 1:numel(names)
    scistack.internal.write_bytes(fullfile(folder, names{k}), payloads{k});
end
manifest = fullfile(folder, 'manifest.json');
scistack.internal.write_bytes([manifest, '.part'], [uint8(text), uint8(10)]);
if exist('OCTAVE_VERSION', 'builtin') ~= 0
    [err, msg] = rename([manifest, '.part'], manifest);
    ok = err == 0;
else
    [ok, msg] = movefile([manifest, '.part'], manifest, 'f');
end
if ~ok
    error('scistack:io', 'cannot write %s: %s', manifest, msg);
end
end

function tf = is_result(v)
tf = isstruct(v) && isscalar(v) && all(isfield(v, {'data', 'oid', 'call'})) && ...
    ischar(v.call) && ~isempty(v.call);
end

function out = add_payload(box, kind, bytes, is_child)
names = box('names');
name = sprintf('payload-%d.bin', numel(names));
box('names') = [names, {name}];
box('kinds') = [box('kinds'), {kind}];
box('bytes') = [box('bytes'), {bytes}];
box('child') = [box('child'), is_child];
if is_child
    out = ['staged:', name];
else
    out = name;
end
end
