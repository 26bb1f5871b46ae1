function cases = test_packs(ctx) %#ok<INUSD>
%TEST_PACKS Objects Python saved in a batch live in .scistack/objects/pack/pack-*.pack with
%   a binary .idx (docs/format.md section 1.4); the reader finds an object as a loose file
%   first, then in the packs. The project is built by pyproject.py with the real scistack.
cases = {
    'values Python saved in a batch load from its pack', @packed_values
    'a zstd frame in a pack, a json value with a packed child, a large loose value', @kinds
    'large raw arrays are read in place (uint32 raw, double zstd; 2-D, C order)', @large_raw
    'load_all and partial loads prefetch packed records', @prefetch_packed
    'a pack written later is found (the index cache follows the folder listing)', @new_pack
    'a damaged pack index is skipped with a warning naming it', @bad_index
    };
end

function use_py(ctx, root)
if nargin < 2
    root = ctx.pyproject;
end
scistack.configure_database(fullfile(root, 'gait.duckdb'), {'subject', 'session'});
end

function x = raw_emg(subject, session)
offsets = struct('pre', 1, 'post', 2, 'baseline', 3);
x = (0:7)' * subject + offsets.(session);
end

function packed_values(ctx)
use_py(ctx);
r = RawEMG().load('subject', 2, 'session', 'post');
t_equal(r.data, raw_emg(2, 'post'), 'RawEMG subject 2 post');
loose = fullfile(ctx.pyproject, '.scistack', 'objects', r.oid(1:2), r.oid(3:end));
t_assert(~exist(loose, 'file'), 'the value is packed, not loose');
[found, pack] = scistack.internal.packs(ctx.pyproject, {r.oid});
t_assert(found, 'the pack index lists it');
t_assert(~isempty(regexp(pack{1}, 'pack-[0-9a-f]+\.pack$', 'once')), 'pack file %s', pack{1});
other = RawEMG().load('subject', 3, 'session', 'baseline');
found = scistack.internal.packs(ctx.pyproject, {r.oid, repmat('0', 1, 64), 'xyz', ...
    other.oid, repmat('f', 1, 64)});
t_equal(found, logical([1, 0, 0, 1, 0]), 'found, missing, invalid, found, missing');
[value, info] = scistack.read_object(ctx.pyproject, r.oid);
t_equal(value, raw_emg(2, 'post'), 'read_object');
t_equal(info.descr, '<f8', 'descr');
end

function kinds(ctx)
use_py(ctx);
z = PackedZ().load('subject', 1);
t_equal(z.data, mod(0:999, 7)', 'zstd frame inside a pack');
[~, pack, offset, len] = scistack.internal.packs(ctx.pyproject, {z.oid});
b = scistack.internal.read_range(pack{1}, offset, len);
t_equal(b(1:4)', uint8([40, 181, 47, 253]), 'the fixture really packed a zstd frame');
j = PackedJson().load('subject', 1);
t_equal(j.data, struct('a', eye(3), 'n', 3, 'name', 'x'), 'json with a packed child');
big = BigLoose().load('subject', 1);
t_equal(big.data, repmat((0:999)', 200, 1), 'large value: a loose file even in a batch');
t_assert(exist(fullfile(ctx.pyproject, '.scistack', 'objects', big.oid(1:2), ...
    big.oid(3:end)), 'file') == 2, 'loose');
end

function large_raw(ctx)
use_py(ctx);
s = mod((0:299999)' * 2654435761, 2^32);
t_equal(big_raw(ctx, 1, false), uint32(reshape(s, 600, 500)'), 'uint32 (500, 600), raw');
s = mod((0:199999)' * 2654435761, 2^32);
b = big_raw(ctx, 2, true);
t_equal(b, reshape(s / 7, 200, 1000)', 'double (1000, 200), zstd');
rs = BigRaw().load_all();
t_equal(rs(2).data, b, 'load_all reads large values in place too');
end

function x = big_raw(ctx, subject, compressed)
r = BigRaw().load('subject', subject);
path = fullfile(ctx.pyproject, '.scistack', 'objects', r.oid(1:2), r.oid(3:end));
t_equal(scistack.internal.is_zstd_file(path), compressed, 'stored compressed');
if compressed
    path = scistack.internal.zstd_to_file(path);
    cleaner = onCleanup(@() delete(path));
end
[x2, info, done] = scistack.internal.read_npy_file(path, r.oid);
t_assert(done, 'the in-place reader takes it');
t_equal(info.shape, size(x2), 'shape');
x = r.data;
t_equal(x, x2, 'both paths agree');
end

function prefetch_packed(ctx)
use_py(ctx);
rs = RawEMG().load('subject', 3);
t_equal(numel(rs), 3, 'three sessions');
t_equal(cellfun(@(r) r.metadata.session, rs, 'UniformOutput', false), ...
    {'baseline'; 'post'; 'pre'}, 'sorted');
t_equal(rs{3}.data, raw_emg(3, 'pre'), 'data');
all = RawEMG().load_all('session', 'baseline');
t_equal(numel(all), 3, 'load_all');
t_equal(all(2).data, raw_emg(2, 'baseline'), 'load_all data');
raw = scistack.internal.prefetch(ctx.pyproject, {rs{1}.oid, PackedZ().load('subject', 1).oid});
t_assert(~isempty(raw{1}) && ~isempty(raw{2}), 'prefetch reads packed records');
t_equal(char(raw{2}(1:4)'), 'npy ', 'a packed zstd frame is inflated');
end

function new_pack(ctx)
root = copy_of(ctx);
use_py(ctx, root);
r = RawEMG().load('subject', 1, 'session', 'pre');   % the pack indexes are now cached
t_equal(r.data, raw_emg(1, 'pre'), 'before');
big = BigLoose().load('subject', 1);
loose = fullfile(root, '.scistack', 'objects', big.oid(1:2), big.oid(3:end));
stored = scistack.internal.read_bytes(loose);
write_pack(fullfile(root, '.scistack', 'objects', 'pack'), 'pack-0000test', big.oid, stored);
delete(loose);
again = BigLoose().load('subject', 1);
t_equal(again.data, big.data, 'found in the pack written after the cache was filled');
r = RawEMG().load('subject', 1, 'session', 'pre');
t_equal(r.data, raw_emg(1, 'pre'), 'the old pack is still read');
rmdir(root, 's');
end

function bad_index(ctx)
root = copy_of(ctx);
use_py(ctx, root);
folder = fullfile(root, '.scistack', 'objects', 'pack');
scistack.internal.write_bytes(fullfile(folder, 'pack-bad.idx'), uint8('NOTANIDX........'));
scistack.internal.write_bytes(fullfile(folder, 'pack-bad.pack'), uint8('SCIPACK1'));
lastwarn('');
r = RawEMG().load('subject', 1, 'session', 'post');
t_equal(r.data, raw_emg(1, 'post'), 'the good pack still loads');
[msg, id] = lastwarn();
t_equal(id, 'scistack:corruptPack', 'warning id');
t_assert(~isempty(strfind(msg, 'pack-bad.idx')), 'the warning names the file: %s', msg);
rmdir(root, 's');
end

function root = copy_of(ctx)
root = tempname();
mkdir(root);
copyfile(fullfile(ctx.pyproject, '.scistack'), fullfile(root, '.scistack'));
end

function write_pack(folder, name, oid, stored)
raw = uint8(hex2dec(reshape(oid, 2, [])'))';
n = typecast(uint64(numel(stored)), 'uint8');
scistack.internal.write_bytes(fullfile(folder, [name, '.pack']), ...
    [uint8('SCIPACK1'), raw, n, stored(:)']);
offset = typecast(uint64(8 + 32 + 8), 'uint8');
scistack.internal.write_bytes(fullfile(folder, [name, '.idx']), ...
    [uint8('SCIIDX01'), typecast(uint64(1), 'uint8'), raw, offset, n]);
end
