"""The disk cache: atomic round trip, corrupt entries ignored, format-version folder."""

import numpy as np

from tdn_theory.so3 import cache
from tdn_theory.so3.clebsch_gordan import _real_cg_float_uncached


def test_round_trip_and_corruption(tmp_path, monkeypatch):
    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path))
    assert cache.cache_dir() == tmp_path / f"v{cache.FORMAT_VERSION}"
    block = _real_cg_float_uncached(2, 2, 3)
    assert cache.load("b", block.shape) is None
    cache.store("b", block)
    assert np.array_equal(cache.load("b", block.shape), block)
    assert cache.load("b", (1, 2, 3)) is None  # wrong shape counts as missing
    assert [p.name for p in cache.cache_dir().iterdir()] == ["b.npy"]  # no temporary left
    (cache.cache_dir() / "b.npy").write_bytes(b"not a numpy file")
    assert cache.load("b", block.shape) is None


def test_unwritable_cache_is_bypassed(tmp_path, monkeypatch):
    target = tmp_path / "file"
    target.write_text("x")
    monkeypatch.setenv("TDN_THEORY_CACHE", str(target))  # a file, not a folder
    cache.store("b", np.ones(3))
    assert cache.load("b", (3,)) is None
