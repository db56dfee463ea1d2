"""The disk cache: atomic round trip, verified entries (checksum and orthogonality), a damaged or
altered entry is recomputed and replaced, special files are never replaced, umask respected."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tdn_theory.so3 import cache, cg_tensor
from tdn_theory.so3 import clebsch_gordan as cgmod
from tdn_theory.so3.clebsch_gordan import _real_cg_float_uncached, is_orthonormal_block

ROOT = Path(__file__).resolve().parents[1]


def test_round_trip_and_corruption(tmp_path, monkeypatch):
    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path))
    assert cache.cache_dir() == tmp_path / f"v{cache.FORMAT_VERSION}"
    block = _real_cg_float_uncached(2, 2, 3)
    assert cache.load("b", block.shape) is None
    cache.store("b", block)
    assert np.array_equal(cache.load("b", block.shape), block)
    assert cache.load("b", (1, 2, 3)) is None  # wrong shape counts as missing
    assert [p.name for p in cache.cache_dir().iterdir()] == ["b.npz"]  # no temporary left
    cache.entry_path("b").write_bytes(b"not a numpy file")
    assert cache.load("b", block.shape) is None


def _rewrite(name, value, digest=None):
    """Replace an entry's value, keeping (digest=None: recomputing) its checksum."""
    np.savez(
        cache.entry_path(name),
        value=value,
        sha256=np.array(cache.checksum(value) if digest is None else digest),
    )


def test_altered_values_are_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path))
    block = _real_cg_float_uncached(1, 2, 2)
    cache.store("b", block)
    digest = str(np.load(cache.entry_path("b"))["sha256"])
    # values changed, old checksum kept: the checksum catches it
    _rewrite("b", 2 * block, digest)
    assert cache.load("b", block.shape) is None
    # one flipped bit (lowest mantissa bit of one entry), old checksum kept
    flipped = block.copy()
    flipped.view(np.uint64)[0, 1, 2] ^= np.uint64(1)
    assert not np.array_equal(flipped, block)
    _rewrite("b", flipped, digest)
    assert cache.load("b", block.shape) is None
    # values changed AND checksum recomputed: the orthogonality relation catches a rescaling
    _rewrite("b", 2 * block)
    assert cache.load("b", block.shape) is not None  # no predicate: checksum alone passes
    assert cache.load("b", block.shape, validate=is_orthonormal_block) is None
    _rewrite("b", block)
    assert np.array_equal(cache.load("b", block.shape, validate=is_orthonormal_block), block)


def test_orthogonality_relation_of_every_block():
    for l1 in range(4):
        for l2 in range(l1, 4):
            for l3 in range(abs(l1 - l2), l1 + l2 + 1):
                block = _real_cg_float_uncached(l1, l2, l3)
                assert is_orthonormal_block(block)
                assert not is_orthonormal_block(1.001 * block)


def test_corrupted_cg_cache_entry_is_recomputed(tmp_path, monkeypatch):
    """The issue's repro: doubling the cached (1, 2, 2) block used to give (M**2).sum() = 40."""
    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path))
    cgmod._real_cg_float.cache_clear()
    try:
        assert (cg_tensor(3) ** 2).sum() == pytest.approx(34.0, abs=1e-12)
        path = cache.entry_path("real_cg_1_2_2")
        with np.load(path) as data:
            value, digest = np.array(data["value"]), str(data["sha256"])
        for bad, keep_digest in ((2 * value, True), (2 * value, False), (-value, True)):
            _rewrite("real_cg_1_2_2", bad, digest if keep_digest else None)
            cgmod._real_cg_float.cache_clear()  # a fresh process would start here
            assert (cg_tensor(3) ** 2).sum() == pytest.approx(34.0, abs=1e-12)
            np.testing.assert_array_equal(cgmod.real_cg(1, 2, 2), value)
            # the bad entry was replaced by the recomputed block
            with np.load(path) as data:
                np.testing.assert_array_equal(data["value"], value)
    finally:
        cgmod._real_cg_float.cache_clear()


def test_corrupted_cache_in_a_fresh_process(tmp_path):
    env = {**os.environ, "TDN_THEORY_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)}
    code = "from tdn_theory import cg_tensor; print(round(float((cg_tensor(3)**2).sum()), 9))"
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert first.stdout.strip() == "34.0", first.stderr
    path = tmp_path / f"v{cache.FORMAT_VERSION}" / "real_cg_1_2_2.npz"
    raw = bytearray(path.read_bytes())
    with np.load(path) as data:
        first_value = np.array(data["value"])
    # flip one bit inside the stored values (the data follow the .npy header in the zip member)
    offset = bytes(raw).find(first_value.tobytes()[:16])
    assert offset > 0
    raw[offset + 5] ^= 0x10
    path.write_bytes(bytes(raw))
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert second.stdout.strip() == "34.0", second.stderr


def test_unwritable_cache_is_bypassed(tmp_path, monkeypatch):
    target = tmp_path / "file"
    target.write_text("x")
    monkeypatch.setenv("TDN_THEORY_CACHE", str(target))  # a file, not a folder
    cache.store("b", np.ones(3))
    assert cache.load("b", (3,)) is None


def test_special_files_are_not_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path))
    cache.cache_dir().mkdir(parents=True)
    fifo = cache.entry_path("f")
    os.mkfifo(fifo)
    cache.store("f", np.ones(3))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert cache.load("f", (3,)) is None  # a miss, without opening (which would block)
    link = cache.entry_path("l")
    (tmp_path / "elsewhere").write_text("keep")
    link.symlink_to(tmp_path / "elsewhere")
    cache.store("l", np.ones(3))
    assert link.is_symlink() and (tmp_path / "elsewhere").read_text() == "keep"


def test_entries_respect_the_umask(tmp_path, monkeypatch):
    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path))
    old = os.umask(0o022)
    try:
        cache.store("b", np.ones(3))
        assert stat.S_IMODE(cache.entry_path("b").stat().st_mode) == 0o644
        os.umask(0o077)
        cache.store("c", np.ones(3))
        assert stat.S_IMODE(cache.entry_path("c").stat().st_mode) == 0o600
    finally:
        os.umask(old)
