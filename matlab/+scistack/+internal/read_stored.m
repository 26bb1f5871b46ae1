function [bytes, where] = read_stored(root, oid, fetched)
%READ_STORED The content of one object ("<kind> <len>\0" + payload, inflated when it is
%   stored as a zstd frame) and where it came from: the loose file
%   .scistack/objects/<oid[0:2]>/<rest> first, then the packs (docs/format.md section 1.4).
%   BYTES is [] and WHERE '' when the object is in neither. WHERE is the loose path, or
%   '<pack file>@<offset>'. A lab project's object not in the local cache is fetched first.
if nargin < 3
    fetched = false;
end
path = fullfile(scistack.internal.store_dir(root), 'objects', oid(1:2), oid(3:end));
if exist(path, 'file')
    where = path;
    if scistack.internal.is_zstd_file(path)
        bytes = scistack.internal.zstd_inflate(path);   % never read the frame into memory
    else
        bytes = scistack.internal.read_bytes(path);
    end
    return
end
[found, pack, offset, len] = scistack.internal.packs(root, {oid});
if ~found && ~fetched && scistack.internal.is_lab(root)
    scistack.internal.lab_fetch(root, {oid});
    [bytes, where] = scistack.internal.read_stored(root, oid, true);
    return
end
if ~found
    bytes = [];
    where = '';
    return
end
bytes = scistack.internal.read_range(pack{1}, offset, len);
where = sprintf('%s@%d', pack{1}, offset);
if numel(bytes) >= 4 && isequal(bytes(1:4)', uint8([40, 181, 47, 253]))
    got = scistack.internal.inflate_bytes({bytes});
    bytes = got{1};
end
end
