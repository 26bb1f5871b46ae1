function [found, pack, offset, len] = packs(root, oids)
%PACKS Where objects are in the packs of a project (docs/format.md section 1.4).
%   [FOUND, PACK, OFFSET, LEN] = packs(ROOT, OIDS) takes a cell array of oids and returns,
%   for each, whether it is in a pack, the .pack file, the byte offset of its stored bytes
%   and their length (PACK{k} = '' and OFFSET(k) = LEN(k) = 0 when not packed).
%   The .idx files (b"SCIIDX01" | uint64 count | count x (32-byte oid | uint64 offset |
%   uint64 n), little-endian) are parsed once and cached per project, keyed on the listing
%   of .scistack/objects/pack (names, sizes, dates): a pack added or removed (gc repacks)
%   re-reads the indexes, an unchanged folder costs one dir() call.
persistent cache
if isempty(cache)
    cache = containers.Map('KeyType', 'char', 'ValueType', 'any');
end
found = false(size(oids));
pack = repmat({''}, size(oids));
offset = zeros(size(oids));
len = zeros(size(oids));
folder = fullfile(root, '.scistack', 'objects', 'pack');
listing = dir(fullfile(folder, 'pack-*.idx'));
if isempty(listing)
    return
end
key = listing_key(listing);
if cache.isKey(root)
    P = cache(root);
else
    P = struct('key', '');
end
if ~strcmp(P.key, key)
    P = read_indexes(folder, listing);
    P.key = key;
    cache(root) = P;
end
if isempty(P.oids)
    return
end
[found, loc] = ismember(oids, P.oids);
pack(found) = P.files(P.pack(loc(found)));
offset(found) = P.offset(loc(found));
len(found) = P.len(loc(found));
end

function key = listing_key(listing)
[names, order] = sort({listing.name});
bytes = [listing.bytes];
dates = [listing.datenum];
parts = cell(1, numel(names));
for k = 1:numel(names)
    parts{k} = sprintf('%s|%d|%.8f', names{k}, bytes(order(k)), dates(order(k)));
end
key = strjoin(parts, ';');
end

function P = read_indexes(folder, listing)
digits = '0123456789abcdef';
files = {};
oids = cell(0, 1);
which = zeros(0, 1);
offset = zeros(0, 1);
len = zeros(0, 1);
for k = 1:numel(listing)
    idx = fullfile(folder, listing(k).name);
    packfile = [idx(1:end - 4), '.pack'];
    if ~exist(packfile, 'file')
        continue    % cannot happen for a complete pack (the .idx is renamed in last)
    end
    b = scistack.internal.read_bytes(idx);
    if numel(b) < 16 || ~isequal(char(b(1:8)'), 'SCIIDX01')
        warning('scistack:corruptPack', ['%s is not a pack index (no SCIIDX01 magic); ', ...
            'its objects are skipped. Run `scistack fsck`'], idx);
        continue
    end
    count = double(typecast(b(9:16), 'uint64'));
    if numel(b) < 16 + 48 * count
        warning('scistack:corruptPack', ['%s is truncated (%d entries announced, %d ', ...
            'bytes); its objects are skipped. Run `scistack fsck`'], idx, count, numel(b));
        continue
    end
    E = reshape(b(17:16 + 48 * count), 48, count);
    raw = double(E(1:32, :));
    H = char(zeros(64, count));
    H(1:2:end, :) = digits(floor(raw / 16) + 1);
    H(2:2:end, :) = digits(mod(raw, 16) + 1);
    files{end + 1} = packfile; %#ok<AGROW>
    oids = [oids; cellstr(H')]; %#ok<AGROW>
    which = [which; repmat(numel(files), count, 1)]; %#ok<AGROW>
    offset = [offset; double(typecast(reshape(E(33:40, :), [], 1), 'uint64'))]; %#ok<AGROW>
    len = [len; double(typecast(reshape(E(41:48, :), [], 1), 'uint64'))]; %#ok<AGROW>
end
P = struct('key', '', 'files', {files}, 'oids', {oids}, 'pack', which, 'offset', offset, ...
    'len', len);
end
