function raw = prefetch(root, oids, rescan)
%PREFETCH The contents of many objects (loose files, then packs), with every
%   zstd-compressed one inflated by a batch of zstd commands in one system() call (a process
%   per call costs ~25 ms, which would dominate loading many small compressed objects).
%   RAW{k} is [] when oids{k} is invalid or missing (read_object then reads it itself and
%   reports the problem) and for loose files of 1 MB or more (read in place by read_object).
%   RESCAN false reuses the cached pack indexes without looking at the pack folder (see
%   scistack.internal.packs).
if nargin < 3
    rescan = true;
end
scistack.internal.lab_fetch(root, oids);  % a lab project: missing objects into the cache
raw = cell(size(oids));
zpaths = {};
zk = [];
frames = {};
fk = [];
absent = false(size(oids));
for k = 1:numel(oids)
    if ~scistack.internal.is_oid(oids{k})
        continue
    end
    path = fullfile(scistack.internal.store_dir(root), 'objects', oids{k}(1:2), oids{k}(3:end));
    if ~exist(path, 'file')
        absent(k) = true;
    else
        d = dir(path);
        if d.bytes >= 1048576 || scistack.internal.shuffle_width(path) > 0
            continue    % a large object or a shuffled chunk: read_object reads it itself
        elseif scistack.internal.is_zstd_file(path)
            zpaths{end + 1} = path; %#ok<AGROW>
            zk(end + 1) = k; %#ok<AGROW>
        else
            raw{k} = scistack.internal.read_bytes(path);
        end
    end
end
if any(absent)
    [found, pack, offset, len] = scistack.internal.packs(root, oids(absent), rescan);
    where = find(absent);
    for j = find(found(:)')
        k = where(j);
        b = scistack.internal.read_range(pack{j}, offset(j), len(j));
        if numel(b) >= 4 && isequal(b(1:4)', uint8([40, 181, 47, 253]))
            frames{end + 1} = b; %#ok<AGROW>
            fk(end + 1) = k; %#ok<AGROW>
        else
            raw{k} = b;
        end
    end
end
if numel(zpaths) == 1
    raw{zk} = scistack.internal.zstd_inflate(zpaths{1});
elseif numel(zpaths) > 1
    raw(zk) = scistack.internal.zstd_inflate(zpaths);
end
if ~isempty(frames)
    raw(fk) = scistack.internal.inflate_bytes(frames);
end
end
