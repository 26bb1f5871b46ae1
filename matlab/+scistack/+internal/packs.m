function [found, pack, offset, len] = packs(root, oids, rescan)
%PACKS Where objects are in the packs of a project (docs/format.md section 1.4).
%   [FOUND, PACK, OFFSET, LEN] = packs(ROOT, OIDS) takes a cell array of oids and returns,
%   for each, whether it is in a pack, the .pack file, the byte offset of its stored bytes
%   and their length (PACK{k} = '' and OFFSET(k) = LEN(k) = 0 when not packed).
%   The .idx files (b"SCIIDX01" | uint64 count | count x (32-byte oid | uint64 offset |
%   uint64 n), little-endian) are parsed once and cached per project, keyed on the listing
%   of .scistack/objects/pack (names, sizes, dates): a pack added or removed (gc repacks)
%   re-reads the indexes, an unchanged folder costs one dir() call. RESCAN false (default
%   true) skips even that when the project's indexes are cached (for_each looks up the
%   inputs of many combinations in a row: it rescans once, for the first).
persistent cache
if isempty(cache)
    cache = containers.Map('KeyType', 'char', 'ValueType', 'any');
end
found = false(size(oids));
pack = repmat({''}, size(oids));
offset = zeros(size(oids));
len = zeros(size(oids));
if nargin < 3
    rescan = true;
end
if ~rescan && cache.isKey(root)
    P = cache(root);
else
    folder = fullfile(scistack.internal.store_dir(root), 'objects', 'pack');
    listing = dir(fullfile(folder, 'pack-*.idx'));
    if isempty(listing)
        return
    end
    key = listing_key(listing);
    if cache.isKey(root)
        P = cache(root);
    else
        P = struct('listing', '');
    end
    if ~strcmp(P.listing, key)
        P = read_indexes(folder, listing);
        P.listing = key;
        cache(root) = P;
    end
end
if isempty(P.oids)
    return
end
loc = locate(P, oids);
found = loc > 0;
pack(found) = P.files(P.pack(loc(found)));
offset(found) = P.offset(loc(found));
len(found) = P.len(loc(found));
end

function loc = locate(P, oids)
% Binary search on the sorted 52-bit prefixes (vectorised over the queries), then a check
% of the whole oid: ismember would sort the whole index on every call.
loc = zeros(size(oids));
ok = cellfun(@(o) ischar(o) && numel(o) == 64, oids);
if ~any(ok(:))
    return
end
q = prefix_keys(char(oids(ok)));
n = numel(P.key);
lo = ones(size(q));
hi = n * ones(size(q));
while any(lo < hi)
    mid = floor((lo + hi) / 2);
    right = P.key(mid) < q;
    lo(right) = mid(right) + 1;
    hi(~right) = mid(~right);
end
where = find(ok);
for j = 1:numel(where)
    k = lo(j);
    while k <= n && P.key(k) == q(j)
        if strcmp(P.oids{k}, oids{where(j)})
            loc(where(j)) = k;
            break
        end
        k = k + 1;
    end
end
end

function key = prefix_keys(H)
% The first 13 hex digits (52 bits, exact in a double) of each row of a char matrix.
digits = double(H(:, 1:13));
v = digits - 48;
letters = digits >= 97;
v(letters) = digits(letters) - 87;
key = v * (16 .^ (12:-1:0))';
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
key = zeros(0, 1);
order = zeros(0, 1);
if ~isempty(oids)
    [key, order] = sort(prefix_keys(char(oids)));
end
P = struct('listing', '', 'key', key(:), 'files', {files}, 'oids', {oids(order)}, ...
    'pack', which(order), 'offset', offset(order), 'len', len(order));
end
