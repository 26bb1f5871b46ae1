function lab_fetch(root, oids)
%LAB_FETCH For a lab project, fetch the objects of OIDS (a cell array) that are in neither a
%   loose file nor a pack of the local cache, in one `scistack matlab-mirror` call.
folder = scistack.internal.store_dir(root);
if strcmp(folder, fullfile(root, '.scistack'))
    return  % a laptop project: every object is on this disk
end
folder = fullfile(folder, 'objects');
missing = false(size(oids));
for k = 1:numel(oids)
    missing(k) = scistack.internal.is_oid(oids{k}) && ...
        ~exist(fullfile(folder, oids{k}(1:2), oids{k}(3:end)), 'file');
end
if any(missing)
    found = scistack.internal.packs(root, oids(missing));
    where = find(missing);
    missing(where(found)) = false;
end
if any(missing)
    scistack.internal.lab_sync(root, oids(missing));
end
end
