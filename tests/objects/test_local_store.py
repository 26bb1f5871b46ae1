"""LocalObjectStore beyond the contract: layout, modes, compression, corruption, hostile input.

Every test works on real files in tmp_path; damage is done to the files themselves.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import zstandard

from scistack.errors import CorruptObjectError, InvalidOidError, ObjectNotFoundError
from scistack.objects import LocalObjectStore
from tests.objects.store_contract import INVALID_OIDS, reference_oid
from tests.objects.test_stores import ZSTD_MAGIC, read_object_file

MB = 1 << 20


@pytest.fixture
def store(tmp_path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


def rewrite(path, content: bytes) -> None:
    """Replace a (read-only) object file's bytes, as damage or an attacker would."""
    os.chmod(path, 0o644)
    with open(path, "wb") as handle:
        handle.write(content)


def flip_byte(path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    rewrite(path, bytes(data))


def random_floats(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


# -- layout and modes ---------------------------------------------------------------------
def test_file_layout_is_git_fan_out(store, tmp_path):
    oid = store.put("bytes", b"hello")
    path = tmp_path / "objects" / oid[:2] / oid[2:]
    assert store.path_of(oid) == path and path.is_file()
    assert sorted(p.relative_to(tmp_path / "objects").as_posix() for p in (tmp_path / "objects").rglob("*")) == sorted([
        oid[:2], f"{oid[:2]}/{oid[2:]}", "gc-writers.lock"])  # the lock a pruning gc checks (gate.py)
    assert read_object_file(path) == ("bytes", b"hello")
    assert store.size_of(oid) == path.stat().st_size


@pytest.mark.parametrize("size", [10, 100 * 1024, 3 * MB])
def test_objects_are_read_only(store, size):
    oid = store.put("bytes", bytes(size))
    assert stat.S_IMODE(os.stat(store.path_of(oid)).st_mode) == 0o444


def test_objects_written_by_one_store_are_read_by_another(store, tmp_path):
    oid = store.put_value({"a": np.arange(5)})
    other = LocalObjectStore(tmp_path / "objects")
    assert set(other.iter_oids()) == set(store.iter_oids())
    np.testing.assert_array_equal(other.get_value(oid)["a"], np.arange(5))


# -- zstd or raw --------------------------------------------------------------------------
@pytest.mark.parametrize("n", [4096, 1_000_000], ids=["small", "large-streamed"])
def test_zeros_are_compressed_and_random_floats_stored_raw(store, n):
    zeros, noise = store.put_value(np.zeros(n)), store.put_value(random_floats(n))
    assert store.path_of(zeros).read_bytes()[:4] == ZSTD_MAGIC
    assert store.path_of(noise).read_bytes()[:4] == b"npy "
    assert store.size_of(zeros) < 8 * n / 50
    assert store.size_of(noise) == len(b"npy %d\x00" % (128 + 8 * n)) + 128 + 8 * n
    for oid in (zeros, noise):  # either way the file is exactly the documented format
        assert read_object_file(store.path_of(oid)) == ("npy", bytes(store.get(oid).payload))
    assert zstandard.frame_content_size(store.path_of(zeros).read_bytes()) > 0  # size declared


def test_tiny_objects_are_never_compressed(store):
    oid = store.put("json", b"0" * 50)
    assert store.path_of(oid).read_bytes() == b"json 50\x00" + b"0" * 50


def test_compression_never_changes_the_oid(store):
    payload = bytes(100_000)
    assert store.put("bytes", payload) == reference_oid("bytes", payload)


# -- re-put refreshes mtime (gc grace period) ---------------------------------------------
@pytest.mark.parametrize("size", [10, 3 * MB])
def test_reput_refreshes_mtime_and_changes_nothing_else(store, size):
    payload = bytes(range(256)) * (size // 256 + 1)
    oid = store.put("bytes", payload)
    path = store.path_of(oid)
    old = time.time() - 30 * 86400
    os.utime(path, (old, old))
    before = path.read_bytes()
    assert store.put("bytes", payload) == oid
    assert store.mtime_of(oid) > old + 29 * 86400
    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert list(store.iter_temp_files()) == []


# -- temp files ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", [10, 1000, 3 * MB])
def test_failed_write_leaves_no_temp_file_and_no_object(store, monkeypatch, size):
    def write_half_then_fail(self, out, header, parts, length):
        out.write(header)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalObjectStore, "_write_content", write_half_then_fail)
    with pytest.raises(OSError, match="No space"):
        store.put("bytes", bytes(size))
    monkeypatch.undo()
    oid = reference_oid("bytes", bytes(size))
    assert not store.contains(oid)
    assert list(store.iter_temp_files()) == []
    assert list(store.iter_oids()) == []
    assert store.put("bytes", bytes(size)) == oid  # and a retry works
    assert bytes(store.get(oid).payload) == bytes(size)


def test_interrupted_write_leaves_no_temp_file(store, monkeypatch):
    def interrupt(self, out, header, parts, length):
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalObjectStore, "_write_content", interrupt)
    with pytest.raises(KeyboardInterrupt):
        store.put("bytes", b"x" * 100)
    assert list(store.iter_temp_files()) == []


def test_iter_oids_ignores_temp_files_and_junk(store, tmp_path):
    oid = store.put("bytes", b"real")
    root = tmp_path / "objects"
    (root / oid[:2] / ".tmp-123-abcdef").write_bytes(b"half")
    (root / oid[:2] / ("f" * 61)).write_bytes(b"short name")
    (root / oid[:2] / ("F" * 62)).write_bytes(b"upper case")
    (root / "zz").mkdir()
    (root / "zz" / ("a" * 62)).write_bytes(b"non-hex fan")
    (root / "abc").mkdir()
    (root / "README").write_text("junk")
    (root / "ab").write_text("a file where a fan-out dir would be")
    assert list(store.iter_oids()) == [oid]
    assert [p.name for p in store.iter_temp_files()] == [".tmp-123-abcdef"]


def test_iter_oids_of_a_store_never_written(tmp_path):
    assert list(LocalObjectStore(tmp_path / "nothing").iter_oids()) == []
    assert list(LocalObjectStore(tmp_path / "nothing").iter_temp_files()) == []


def test_put_after_the_fan_out_dir_was_removed(store):
    oid = store.put("bytes", b"one")
    shutil.rmtree(store.path_of(oid).parent)  # gc removing an empty dir, or a user
    assert store.put("bytes", b"one") == oid
    assert bytes(store.get(oid).payload) == b"one"


# -- corruption ---------------------------------------------------------------------------
def slow_signal(nbytes: int, dtype=np.int16) -> bytes:
    """A chunk's payload of a slow signal with small noise: stored byte-shuffled."""
    n = nbytes // np.dtype(dtype).itemsize
    rng = np.random.default_rng(n)
    values = 200 * np.sin(np.arange(n) / 3000) + rng.integers(-3, 4, n)
    return values.astype(dtype).tobytes()


CASES = {
    "small-raw": lambda: random_floats(100),
    "small-zstd": lambda: np.zeros(10_000),
    "large-raw": lambda: random_floats(300_000),
    "large-zstd": lambda: np.zeros(300_000),
    "shuffled": lambda: ("chunk", slow_signal(4 * MB)),
    "shuffled-small-file": lambda: ("chunk", slow_signal(MB + MB // 2)),  # < 1 MB stored
}


@pytest.fixture(params=sorted(CASES))
def saved(request, store):
    value = CASES[request.param]()
    oid = store.put(*value) if isinstance(value, tuple) else store.put_value(value)
    return store, oid, store.path_of(oid)


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64, np.int64])
def test_a_compressible_chunk_is_stored_shuffled_and_reads_back(store, dtype):
    from scistack.objects.shuffle import width_of

    payload = slow_signal(2 * MB, dtype)
    oid = store.put("chunk", payload)
    head = store.path_of(oid).read_bytes()[:12]
    assert width_of(head) in (2, 4, 8) and store.size_of(oid) < 0.8 * len(payload)
    assert bytes(store.get(oid).payload) == payload and store.kind_of(oid) == "chunk"
    store.verify(oid)
    assert width_of(store.path_of(store.put("npy", payload + b"x")).read_bytes()[:12]) == 0  # chunks only


def test_a_shuffled_chunk_with_a_damaged_announcement_is_corrupt(store):
    oid = store.put("chunk", slow_signal(2 * MB))
    data = bytearray(store.path_of(oid).read_bytes())
    for at, byte in ((10, 3), (11, 1), (8, ord("X"))):  # an unknown width, padding, tag
        damaged = bytearray(data)
        damaged[at] = byte
        rewrite(store.path_of(oid), bytes(damaged))
        for read in (store.get, store.verify):
            with pytest.raises(CorruptObjectError):
                read(oid)


def read_into(store: LocalObjectStore, oid: str, length: int) -> tuple[str, int, bytes]:
    out = np.empty(length, dtype=np.uint8)
    kind, got = store.get_into(oid, out)
    return kind, got, bytes(out)


def test_get_into_reads_every_stored_form_into_the_callers_array(saved):
    store, oid, path = saved
    obj = store.get(oid)
    payload = bytes(obj.payload)
    assert read_into(store, oid, len(payload)) == (obj.kind, len(payload), payload)
    assert store.get_into(oid, np.empty(len(payload) - 1, np.uint8)) == (obj.kind, len(payload))


def test_get_into_reads_a_packed_object(store):
    store.begin_batch()
    oid = store.put("chunk", b"x" * 5000)
    store.flush()
    store.end_batch()
    assert not store.path_of(oid).exists()
    assert read_into(store, oid, 5000) == ("chunk", 5000, b"x" * 5000)
    with pytest.raises(ObjectNotFoundError):
        store.get_into(reference_oid("bytes", b"absent"), np.empty(1, np.uint8))


@pytest.mark.parametrize("damage", ["flip-first", "flip-middle", "flip-last", "truncate-5", "truncate-half", "append"])
def test_get_into_refuses_a_damaged_object(saved, damage):
    store, oid, path = saved
    length = len(store.get(oid).payload)
    data = path.read_bytes()
    if damage.startswith("flip"):
        flip_byte(path, {"flip-first": 0, "flip-middle": len(data) // 2, "flip-last": len(data) - 1}[damage])
    else:
        rewrite(path, {"truncate-5": data[:5], "truncate-half": data[: len(data) // 2], "append": data + b"\x00"}[damage])
    with pytest.raises(CorruptObjectError) as info:
        read_into(store, oid, length)
    assert info.value.oid == oid


@pytest.mark.parametrize("where", [0.0, 0.5, 0.999])
def test_flipped_byte_is_a_corrupt_object(saved, where):
    store, oid, path = saved
    flip_byte(path, int(where * (path.stat().st_size - 1)))
    with pytest.raises(CorruptObjectError) as info:
        store.get(oid)
    assert info.value.oid == oid and oid in str(info.value) and "fsck" in str(info.value)


def test_flipped_payload_byte_names_the_actual_hash(store):
    oid = store.put_value(random_floats(100))
    flip_byte(store.path_of(oid), store.size_of(oid) - 1)
    with pytest.raises(CorruptObjectError) as info:
        store.get(oid)
    assert info.value.expected == oid
    assert info.value.actual not in (None, oid) and len(info.value.actual) == 64


@pytest.mark.parametrize("keep", [0, 5, 0.5, -1])
def test_truncated_file_is_a_corrupt_object(saved, keep):
    store, oid, path = saved
    data = path.read_bytes()
    cut = int(keep * len(data)) if isinstance(keep, float) else (keep % len(data))
    rewrite(path, data[:cut])
    with pytest.raises(CorruptObjectError):
        store.get(oid)


def test_appended_bytes_are_a_corrupt_object(saved):
    store, oid, path = saved
    rewrite(path, path.read_bytes() + b"\x00")
    with pytest.raises(CorruptObjectError):
        store.get(oid)


def test_another_objects_file_under_this_name_is_corrupt(store):
    a, b = store.put("bytes", b"a" * 100), store.put("bytes", b"b" * 100)
    rewrite(store.path_of(b), store.path_of(a).read_bytes())
    with pytest.raises(CorruptObjectError) as info:
        store.get(b)
    assert info.value.actual == a


@pytest.mark.parametrize("content", [b"", b"garbage", b"npy 5", b"npy -1\x00", b"npy +5\x00abcde",
                                     b"pickle 3\x00abc", b"npy 5\x00abc", b"\xff\xfe 1\x00a"])
def test_unreadable_headers_are_corrupt(store, content):
    oid = store.put("bytes", b"victim")
    rewrite(store.path_of(oid), content)
    with pytest.raises(CorruptObjectError):
        store.get(oid)


def test_deleted_file_is_object_not_found(saved):
    store, oid, path = saved
    os.unlink(path)
    with pytest.raises(ObjectNotFoundError) as info:
        store.get(oid)
    assert info.value.oid == oid and not store.contains(oid)


def test_corrupt_child_of_a_container_is_reported_with_the_child_oid(store):
    arr = random_floats(50)
    parent = store.put_value({"x": arr})
    child = store.put_value(arr)
    flip_byte(store.path_of(child), store.size_of(child) - 3)
    with pytest.raises(CorruptObjectError) as info:
        store.get_value(parent)
    assert info.value.oid == child


# -- hostile input ------------------------------------------------------------------------
@pytest.mark.parametrize("bad", INVALID_OIDS, ids=repr)
def test_invalid_oids_never_reach_the_file_system(tmp_path, bad):
    root = tmp_path / "deep" / "objects"
    store = LocalObjectStore(root)
    victims = [tmp_path / "victim", tmp_path / "deep" / "victim", root / "ab" / "victim"]
    for victim in victims:
        victim.parent.mkdir(parents=True, exist_ok=True)
        victim.write_text("precious")
    for verb in (store.get, store.contains, store.delete, store.path_of, store.size_of, store.mtime_of):
        with pytest.raises(InvalidOidError):
            verb(bad)
    with pytest.raises(InvalidOidError):
        store.delete("../../victim" if bad is None else "../" + "a" * 61)
    assert all(v.read_text() == "precious" for v in victims)


def test_header_claiming_a_huge_length_is_corrupt_not_a_memory_error(store):
    oid = store.put("bytes", b"small")
    for content in (b"bytes 99999999999999999\x00abc",
                    zstandard.ZstdCompressor(write_content_size=False).compress(b"bytes 999999999999999\x00abc"),
                    b"bytes 5000000\x00" + bytes(2 * MB)):
        rewrite(store.path_of(oid), content)
        with pytest.raises(CorruptObjectError):
            store.get(oid)


def test_frame_declaring_a_small_size_but_inflating_hugely_is_corrupt(store):
    oid = store.put("bytes", b"x" * 100)
    bomb = b"bytes 100\x00" + bytes(64 * MB)
    frame = bytearray(zstandard.ZstdCompressor(level=19).compress(bomb))
    # Patch the frame header's content size (4-byte field after magic + descriptor [+ window])
    params = zstandard.get_frame_parameters(bytes(frame))
    assert params.content_size == len(bomb)
    fcs = bytes(frame).find(len(bomb).to_bytes(4, "little"))
    frame[fcs : fcs + 4] = (110).to_bytes(4, "little")
    assert zstandard.frame_content_size(bytes(frame)) == 110 and len(frame) < MB
    rewrite(store.path_of(oid), bytes(frame))
    with pytest.raises(CorruptObjectError):
        store.get(oid)


BOMB_CHILD = """
import sys
from scistack.objects import LocalObjectStore
from scistack.errors import CorruptObjectError
def peak():  # VmHWM: this process's own peak (ru_maxrss is inherited from the parent)
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM:"))
store = LocalObjectStore(sys.argv[1])
before = peak()
try:
    store.get(sys.argv[2])
except CorruptObjectError:
    pass
else:
    sys.exit("no CorruptObjectError")
print(peak() - before)
"""


def test_decompression_bomb_does_not_blow_up_memory(store):
    """A 1 GB zstd bomb whose object header claims 100 bytes: read in a fresh process."""
    oid = store.put("bytes", b"x" * 100)
    cctx = zstandard.ZstdCompressor(level=3, write_content_size=False)
    path = store.path_of(oid)
    os.chmod(path, 0o644)
    with open(path, "wb") as handle, cctx.stream_writer(handle) as writer:
        writer.write(b"bytes 100\x00")
        for _ in range(1024):
            writer.write(bytes(MB))
    assert path.stat().st_size < 2 * MB
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(store.root), oid],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) < 64 * MB  # a read buffer or two, never the gigabyte


def test_an_object_another_store_packed_unseen_is_packed_again_and_both_copies_serve(store, tmp_path):
    """A write looks for an object among the packs it knows, without looking at the folder
    again (a `stat` each): one another process packed since is stored a second time, and
    reading, verifying and collecting cope with the two copies."""
    other = LocalObjectStore(tmp_path / "objects")
    store.begin_batch()
    store.put("bytes", b"first")
    store.end_batch()  # `store` knows the packs now
    other.begin_batch()
    oid = other.put("bytes", b"shared")
    other.end_batch()  # a pack `store` has not seen
    store.begin_batch()
    assert store.put("bytes", b"shared") == oid
    store.put("bytes", b"beside it")  # (a pack of other content: not the same file again)
    store.end_batch()
    holding = [p for p in (tmp_path / "objects" / "pack").glob("*.pack") if b"shared" in p.read_bytes()]
    assert len(holding) == 2  # the second copy
    for reader in (store, LocalObjectStore(tmp_path / "objects")):
        assert bytes(reader.get(oid).payload) == b"shared"
        reader.verify(oid)


def test_a_process_that_only_saves_does_not_pack_again_what_is_packed_already(store, tmp_path):
    """A write looks among the packs its process knows; one that has read nothing yet knows
    none, so it looks at the folder once (a script re-run saving the same values had stored
    every one of them again)."""
    store.begin_batch()
    oid = store.put("bytes", b"saved before")
    store.end_batch()
    again = LocalObjectStore(tmp_path / "objects")  # a fresh process: nothing read yet
    again.begin_batch()
    assert again.put("bytes", b"saved before") == oid
    again.put("bytes", b"new")
    again.end_batch()
    holding = [p for p in (tmp_path / "objects" / "pack").glob("*.pack") if b"saved before" in p.read_bytes()]
    assert len(holding) == 1


def test_freshen_trusts_what_this_process_made_young_only_while_nothing_can_have_removed_it(store, tmp_path):
    """`freshen` skips the disk for an object this process put or freshened moments ago while
    holding the writers' gate (a save asks for the value and record it just put). It must not
    trust that once the process removed objects itself (gc, fsck) or left the gate (a pruning
    gc may have swept since): it would name an object that is gone."""
    swept = store.put_value(random_floats(8, seed=1))
    assert store.freshen(swept)
    store.delete_many([swept])  # this process's own gc
    assert not store.freshen(swept)

    left = store.put_value(random_floats(8, seed=2))
    assert store.freshen(left)
    store.release_writes()  # every object named: a pruning gc may run now
    other = LocalObjectStore(tmp_path / "objects")  # (another process's gc, on the same folder)
    other.delete_many([left])
    assert not store.freshen(left)

    store.begin_batch()
    packed = store.put_value(random_floats(8, seed=3))
    store.end_batch()  # a new pack: young
    assert store.freshen(packed) and store.contains(packed)
    store.delete_many([packed])
    assert not store.freshen(packed)


def test_set_aside_streams_a_large_damaged_object_in_bounded_memory(store, tmp_path):
    """`fsck --repair` keeps a damaged object's bytes before it leaves the store: a loose one
    had been read whole into memory (a damaged 10 GB recording: 10 GB), now streamed."""
    import tracemalloc

    oid = store.put_value(random_floats(6 << 20, seed=4))  # 48 MB, raw (random floats do not compress)
    path = store.path_of(oid)
    flip_byte(path, os.path.getsize(path) // 2)
    damaged = path.read_bytes()
    tracemalloc.start()
    try:
        kept = store.set_aside(oid, tmp_path / "quarantine")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"set_aside held {peak >> 20} MB at once"
    assert kept.read_bytes() == damaged and not store.contains(oid)


@pytest.mark.parametrize("spelling", [str.upper, lambda o: " ".join(o[i:i + 2] for i in range(0, 64, 2)),
                                      lambda o: o[:32] + "\n" + o[32:]])
def test_a_look_alike_of_a_packed_objects_oid_is_invalid_not_found_or_corrupt(store, spelling):
    # a packed object is found by its oid's bytes, which `bytes.fromhex` also reads from
    # upper case and spaced text: the read serves it only under its own oid, and refuses the
    # look-alike as an invalid oid (never a path, never "corrupt")
    store.begin_batch()
    oid = store.put("bytes", b"packed payload")
    store.end_batch()
    assert not store.path_of(oid).exists() and store.get(oid).payload == b"packed payload"
    for verb in (store.get, store.get_value):
        with pytest.raises(InvalidOidError) as info:
            verb(spelling(oid))
        assert "64 lowercase hex" in str(info.value)


def test_a_store_that_never_merges_its_packs_indexes_them_together_past_midx_packs(tmp_path):
    """A lab's read-through cache keeps a pack per batch (they are the bucket's, never merged):
    once `MIDX_PACKS` are left out of the multi-pack index it is written over them, so a
    refresh does not merge every pack's prefixes anew at each batch; every object still reads."""
    from scistack.objects import pack as pack_module

    store = LocalObjectStore(tmp_path / "objects")
    store.auto_merge = False
    oids = []
    for i in range(pack_module.MIDX_PACKS + 3):
        store.begin_batch()
        oids.append(store.put("bytes", f"value {i}".encode()))
        store.end_batch()
    packs = store.packs
    packs.refresh()
    midx = packs._merged[0]
    assert midx is not None and len(midx.packs) >= pack_module.MIDX_PACKS
    assert len(list(packs.directory.glob("pack-*.idx"))) == pack_module.MIDX_PACKS + 3  # none merged
    reopened = LocalObjectStore(tmp_path / "objects")
    assert [bytes(reopened.get(oid).payload) for oid in oids] == [f"value {i}".encode() for i in range(len(oids))]


@pytest.mark.parametrize("midx", [False, True])
def test_an_object_packed_by_another_store_with_the_folder_time_unchanged_is_found(store, tmp_path, midx):
    """The packs a store knows are listed again only when the pack folder's mtime changed:
    a pack another process wrote in the same timestamp tick as this store's last look (a
    coarse clock: the kernel's tick before Linux 6.13, FAT, a server's) kept that mtime, and
    a load of an object only it holds raised ObjectNotFoundError. The last look before an
    object is reported missing now lists the folder whatever its time says."""
    other = LocalObjectStore(tmp_path / "objects")
    store.begin_batch()
    store.put("bytes", b"first")
    store.end_batch()
    if midx:  # (a multi-pack index over the packs known: the new pack is not in it)
        assert store.packs.consolidate()
    assert store.get(store.put("bytes", b"first")).payload == b"first"  # (`store` has looked)
    folder = tmp_path / "objects" / "pack"
    seen = os.stat(folder)
    other.begin_batch()
    oid = other.put("bytes", b"packed by another")
    other.end_batch()
    os.utime(folder, ns=(seen.st_atime_ns, seen.st_mtime_ns))  # (as a write in the same tick)
    assert not store.path_of(oid).exists()
    assert bytes(store.get(oid).payload) == b"packed by another"
