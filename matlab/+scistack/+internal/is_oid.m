function tf = is_oid(oid)
%IS_OID True for a valid object id: exactly 64 characters of 0-9a-f.
tf = ischar(oid) && size(oid, 1) == 1 && numel(oid) == 64 && ...
    all((oid >= '0' & oid <= '9') | (oid >= 'a' & oid <= 'f'));
end
