function [value, info] = read_object(root, oid, context, raw, payload_only)
%READ_OBJECT The value of one object of a scistack project.
%   VALUE = scistack.read_object(ROOT, OID) reads <ROOT>/.scistack/objects/<oid[0:2]>/<rest>
%   (or, when there is no such file, its record in a pack under objects/pack/), inflates
%   it when it is a zstd frame (through the zstd command-line tool), checks the header
%   "<kind> <len>\0" and the payload length, and decodes the payload:
%     npy   -> array (scistack.decode_npy)
%     json  -> value (scistack.decode_json; {"$ref": oid} children are read recursively)
%     bytes -> uint8 column
%     code  -> char row (UTF-8 source text)
%     call  -> value of the lineage record (child oids are left as text)
%     chunked -> array (scistack.read_chunked: every chunk read and assembled)
%     table -> struct of columns (scistack.decode_table: a DataFrame, Series or Arrow table)
%   Any other kind raises scistack:unsupportedKind. PAYLOAD_ONLY (optional,
%   true) returns the checked payload bytes undecoded (INFO.kind says what they are).
%   [VALUE, INFO] also returns INFO.kind, INFO.oid, INFO.size (payload bytes) and, for npy,
%   INFO.descr / INFO.shape / INFO.unit (e.g. the datetime64 unit).
%   CONTEXT (optional) names the variable in error messages. RAW (optional) is the
%   object's content already read and inflated (see scistack.internal.prefetch).
%
%   The blake3 hash is NOT verified (MATLAB has no blake3); the length in the header is.
if nargin < 3 || isempty(context)
    context = '';
else
    context = [context, ': '];
end
if ~scistack.internal.is_oid(oid)
    if ischar(oid)
        shown = oid;
    else
        shown = sprintf('<%s>', class(oid));
    end
    error('scistack:invalidOid', ['%s"%s" is not a valid object id (64 lowercase hex ', ...
        'characters); the journal or the caller is corrupt'], context, shown);
end
width = 0;  % the element width of a byte-shuffled chunk (0: not shuffled)
if nargin >= 4 && ~isempty(raw)
    bytes = raw;
else
    path = fullfile(scistack.internal.store_dir(root), 'objects', oid(1:2), oid(3:end));
    if exist(path, 'file')
        content = path;
        width = scistack.internal.shuffle_width(path);  % a byte-shuffled chunk (docs/format.md 1)
        if width > 0 || scistack.internal.is_zstd_file(path)
            content = scistack.internal.zstd_to_file(path);
            cleaner = onCleanup(@() delete(content));
        end
        if width == 0 && file_size(content) >= 1048576 && (nargin < 5 || ~payload_only)  % a large array: in place
            [value, info, done] = scistack.internal.read_npy_file(content, oid);
            if done
                return
            end
        end
        bytes = scistack.internal.read_bytes(content);
    else
        [bytes, where] = scistack.internal.read_stored(root, oid);
        if isempty(where)
            error('scistack:objectNotFound', ['%sobject %s is not in the object store %s ', ...
                '(neither a loose file nor in a pack); run `scistack fsck` to find refs ', ...
                'that point to lost objects'], context, oid, ...
                fullfile(scistack.internal.store_dir(root), 'objects'));
        end
    end
end
z = find(bytes(1:min(numel(bytes), 64)) == 0, 1);
header = '';
if ~isempty(z)
    header = char(bytes(1:z - 1)');
end
parts = regexp(header, '^([a-z]+) (\d+)$', 'tokens', 'once');
if isempty(parts)
    error('scistack:corruptObject', ['%sobject %s is corrupt: no "<kind> <len>\\0" header. ', ...
        'Run `scistack fsck`, then re-save the value or restore the file from a backup'], ...
        context, oid);
end
kind = parts{1};
len = str2double(parts{2});
payload = bytes(z + 1:end);
if width > 0 && mod(numel(payload), width) == 0
    payload = reshape(reshape(payload, [], width)', [], 1);  % byte k of every element -> elements
end
if numel(payload) ~= len
    error('scistack:corruptObject', ['%sobject %s is corrupt: its header says %d payload ', ...
        'bytes but it holds %d. Run `scistack fsck`, then re-save the value or restore ', ...
        'the file from a backup'], context, oid, len, numel(payload));
end
info = struct('kind', kind, 'oid', oid, 'size', len, 'descr', '', 'shape', [], 'unit', '');
if nargin >= 5 && payload_only
    value = payload;
    return
end
switch kind
    case 'npy'
        [value, npy] = scistack.decode_npy(payload);
        info.descr = npy.descr;
        info.shape = npy.shape;
        info.unit = npy.unit;
    case 'json'
        name = context;
        value = scistack.decode_json(payload, ...
            @(child) scistack.read_object(root, child, strip_context(name)));
    case 'bytes'
        value = payload;
    case 'code'
        value = scistack.internal.bytes_to_text(payload);
    case 'call'
        value = scistack.decode_json(payload);
    case 'chunked'
        value = scistack.read_chunked(root, oid, [], payload);
    case 'table'
        try
            value = scistack.decode_table(payload);
        catch err  % named with the variable and object, as the other kinds' errors are
            error(err.identifier, '%sobject %s: %s', context, oid, err.message);
        end
    otherwise
        error('scistack:unsupportedKind', ['%sobject %s has kind "%s", which the MATLAB ', ...
            'client cannot decode (it reads npy, json, bytes, code, call, chunked and table objects). ', ...
            'Load it in Python, or save it there as a numpy array or plain values'], ...
            context, oid, kind);
end
end

function c = strip_context(context)
if isempty(context)
    c = '';
else
    c = context(1:end - 2);
end
end

function n = file_size(path)
d = dir(path);
n = d.bytes;
end
