"""Factor files (.npz with A, B, C, meta): round trip, consistency checks, integrity (content hash,
named target, numeric re-check, legacy files), atomic writes that never replace special files."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from tdn_theory.cp import CPFit, FactorFileError, fit_cp, load_factors, save_factors
from tdn_theory.cp import factor_files as ff
from tdn_theory.so3 import cg_tensor

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results" / "factors"


@pytest.fixture(scope="module")
def fitted():
    T = cg_tensor(1)
    fit = fit_cp(T, 5, seed=2, restarts=2, max_iter=60, refine_iter=50, polish_iter=20)
    return T, fit


def save(tmp_path, fitted, name="f.npz", **extra):
    T, fit = fitted
    meta = {"L": 1, "normalization": "unit", "parity": "all", **extra}
    return save_factors(tmp_path / name, fit, meta, target=T)


def read_raw(path):
    with np.load(path) as data:
        return {k: np.array(data[k]) for k in ("A", "B", "C")}, json.loads(str(data["meta"]))


def write_raw(path, arrays, meta):
    np.savez(path, **arrays, meta=np.array(json.dumps(meta)))
    return path


def one_line_error(path, match=None, **kwargs):
    with pytest.raises(FactorFileError, match=match) as info:
        load_factors(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_round_trip(tmp_path, fitted):
    T, fit = fitted
    path = save(tmp_path, fitted)
    loaded, meta = load_factors(path)
    assert isinstance(loaded, CPFit)
    for a, b in zip(loaded.factors, fit.factors, strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.relative_error == fit.relative_error and loaded.seed == 2
    for key in (
        "L",
        "rank",
        "normalization",
        "parity",
        "relative_error",
        "seed",
        "package_version",
        "target_sha256",
        "format",
        "shape",
        "content_sha256",
    ):
        assert key in meta
    assert meta["rank"] == 5 and meta["shape"] == [4, 4, 4] and meta["format"] == ff.FORMAT
    assert meta["target_sha256"] == ff.target_id(1, "unit", "all")
    # the stored error is reproduced by reconstructing from the arrays alone
    with np.load(path) as data:
        assert sorted(data.files) == ["A", "B", "C", "meta"]
        T_hat = np.einsum("kr,ir,jr->kij", data["A"], data["B"], data["C"])
        stored = json.loads(str(data["meta"]))
    assert np.linalg.norm(T_hat - T) / np.linalg.norm(T) == pytest.approx(
        stored["relative_error"], rel=1e-12
    )
    # no temporary file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz"]


def test_expect_checks_metadata(tmp_path, fitted):
    path = save(tmp_path, fitted)
    load_factors(path, expect={"L": 1, "rank": 5, "target_sha256": ff.target_id(1)})
    with pytest.raises(FactorFileError, match="expected"):
        load_factors(path, expect={"normalization": "gaunt"})
    with pytest.raises(FactorFileError, match="lacks"):
        load_factors(path, expect={"nonexistent": 1})
    with pytest.raises(FactorFileError, match="target_sha256"):
        load_factors(path, expect={"target_sha256": ff.target_id(1, "cg")})


def test_target_id_depends_on_the_definition_not_on_rounding():
    ids = {ff.target_id(L, n, p) for L in (1, 2) for n in ("unit", "cg") for p in ("all", "odd")}
    assert len(ids) == 8
    assert ff.target_id(2, "unit", "all") == ff.target_id(np.int64(2), "unit", "all")
    # the byte hash, by contrast, flips on one ulp (why it no longer identifies a target)
    a = np.arange(8.0)
    b = a.copy()
    b[3] = np.nextafter(b[3], np.inf)
    assert ff.tensor_sha256(a) != ff.tensor_sha256(b)


def good_arrays(fitted):
    _, fit = fitted
    meta = {"format": ff.FORMAT, "rank": 5, "relative_error": 0.1, "shape": [4, 4, 4], "L": 1}
    return {"A": fit.A, "B": fit.B, "C": fit.C, "meta": np.array(json.dumps(meta))}, meta


def _meta(m, **changes):
    return np.array(json.dumps({**m, **changes}))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda a, m: a.pop("C"), "lacks the entries"),
        (lambda a, m: a.update(meta=np.array("{not json")), "not valid JSON"),
        (lambda a, m: a.update(meta=np.array("[1, 2]")), "JSON object"),
        (lambda a, m: a.update(meta=np.array(3.0)), "JSON string"),
        (lambda a, m: a.update(B=a["B"][:, :4]), "different numbers of columns"),
        (lambda a, m: a.update(A=np.full_like(a["A"], np.nan)), "NaN"),
        (lambda a, m: a.update(A=a["A"].ravel()), "2-D float"),
        (lambda a, m: a.update(meta=_meta(m, rank=6)), "rank"),
        (lambda a, m: a.update(meta=_meta(m, L=2)), "L = 2"),
        (lambda a, m: a.update(meta=_meta(m, format="x")), "format"),
        (lambda a, m: a.update(meta=np.array(json.dumps({"rank": 5}))), "meta lacks"),
        # item 11: wrong types give FactorFileError, not TypeError
        (lambda a, m: a.update(meta=_meta(m, L=None)), "L must be an integer"),
        (lambda a, m: a.update(meta=_meta(m, L="1")), "L must be an integer"),
        (lambda a, m: a.update(meta=_meta(m, shape=5)), "shape must be a list"),
        (lambda a, m: a.update(meta=_meta(m, shape=[4, 4])), "shape must be a list"),
        (lambda a, m: a.update(meta=_meta(m, rank=None)), "rank must be an integer"),
        (lambda a, m: a.update(meta=_meta(m, rank=True)), "rank must be an integer"),
        (lambda a, m: a.update(meta=_meta(m, relative_error="0.1")), "relative_error"),
        (lambda a, m: a.update(meta=_meta(m, relative_error=-1.0)), "relative_error"),
        (lambda a, m: a.update(meta=_meta(m, seed=1.5)), "seed"),
        # item 12: a zero-rank file is refused
        (
            lambda a, m: a.update(
                A=a["A"][:, :0], B=a["B"][:, :0], C=a["C"][:, :0], meta=_meta(m, rank=0)
            ),
            "empty",
        ),
        # no content hash in a current-format file
        (lambda a, m: None, "content_sha256"),
    ],
)
def test_inconsistent_files_are_refused(tmp_path, fitted, mutate, match):
    arrays, meta = good_arrays(fitted)
    mutate(arrays, meta)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    one_line_error(path, match)


def test_npy_file_is_refused_with_a_file_error(tmp_path, fitted):
    _, fit = fitted
    np.save(tmp_path / "a.npy", fit.A)
    message = one_line_error(tmp_path / "a.npy", ".npy")
    assert "not an .npz" in message


def test_corrupt_and_missing_files(tmp_path, fitted):
    path = save(tmp_path, fitted)
    raw = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file")
    for name in ("trunc.npz", "junk.npz", "absent.npz"):
        with pytest.raises(FactorFileError):
            load_factors(tmp_path / name)
    # pickled object arrays are never loaded
    np.savez(tmp_path / "obj.npz", A=np.array([object()], dtype=object))
    with pytest.raises(FactorFileError):
        load_factors(tmp_path / "obj.npz")


ALTERATIONS = {
    "2A": lambda a: {**a, "A": 2 * a["A"]},
    "swap B, C": lambda a: {**a, "B": a["C"], "C": a["B"]},
    "permuted rows": lambda a: {**a, "A": a["A"][::-1]},
    "random A": lambda a: {**a, "A": np.random.default_rng(0).normal(size=a["A"].shape)},
    "one ulp": lambda a: {**a, "C": np.nextafter(a["C"], np.inf)},
}


@pytest.fixture(scope="module")
def exact_L2(tmp_path_factory):
    """The issue's setting: an exact L = 2, rank-30 factor file (a committed atlas file)."""
    fit, meta = load_factors(RESULTS / "exact_unit_all_L2.npz", expect={"L": 2, "rank": 30})
    path = tmp_path_factory.mktemp("exact") / "f.npz"
    return save_factors(path, fit, meta)


@pytest.mark.parametrize("name", list(ALTERATIONS))
def test_altered_arrays_are_refused(tmp_path, exact_L2, name):
    """Item 2 (the issue's repro): arrays rewritten after writing, metadata kept."""
    path = exact_L2
    arrays, meta = read_raw(path)
    write_raw(tmp_path / "g.npz", ALTERATIONS[name](arrays), meta)
    one_line_error(tmp_path / "g.npz", "content hash mismatch", expect={"L": 2})


def test_altered_arrays_with_a_recomputed_hash_fail_the_numeric_recheck(tmp_path, fitted):
    path = save(tmp_path, fitted)
    arrays, meta = read_raw(path)
    arrays["A"] = 2 * arrays["A"]
    meta["content_sha256"] = ff.content_sha256(meta, arrays["A"], arrays["B"], arrays["C"])
    bad = write_raw(tmp_path / "g.npz", arrays, meta)
    one_line_error(bad, "stored relative_error")
    # the re-check can be switched off (then only the hash, here consistent, is verified)
    fit, _ = load_factors(bad, recheck=False)
    np.testing.assert_array_equal(fit.A, arrays["A"])


def test_changed_metadata_is_refused(tmp_path, fitted):
    path = save(tmp_path, fitted)
    arrays, meta = read_raw(path)
    for key, value in (("relative_error", 1e-16), ("seed", 7), ("lower_bound", 0.0)):
        write_raw(tmp_path / "g.npz", arrays, {**meta, key: value})
        one_line_error(tmp_path / "g.npz", "content hash mismatch")
    for key in ("seed", "content_sha256", "target_sha256"):
        write_raw(tmp_path / "g.npz", arrays, {k: v for k, v in meta.items() if k != key})
        one_line_error(tmp_path / "g.npz", "content")
    # a consistent hash but a target_sha256 that names another tensor
    other = {**meta, "target_sha256": ff.target_id(1, "cg")}
    other["content_sha256"] = ff.content_sha256(other, arrays["A"], arrays["B"], arrays["C"])
    write_raw(tmp_path / "g.npz", arrays, other)
    one_line_error(tmp_path / "g.npz", "does not identify")


def test_recheck_needs_a_named_tensor(tmp_path, fitted):
    T, fit = fitted
    path = save_factors(tmp_path / "u.npz", fit, {"note": "no L"}, target=T)
    _, meta = load_factors(path)  # hash only
    assert "target_sha256" not in meta
    one_line_error(path, "names no tensor", recheck=True)


def legacy_file(path, fit, meta):
    """A file as the old code wrote it: format /1, no content hash, byte-hash target_sha256."""
    old = {
        "format": ff.LEGACY_FORMAT,
        "rank": fit.rank,
        "relative_error": fit.relative_error,
        "seed": fit.seed,
        "seconds": 0.0,
        "shape": list(fit.A.shape[:1]) * 3,
        "package_version": "0.1.0",
        **meta,
    }
    return write_raw(path, {"A": fit.A, "B": fit.B, "C": fit.C}, old)


def test_legacy_files_need_the_numeric_recheck(tmp_path, fitted):
    T, fit = fitted
    named = {"L": 1, "normalization": "unit", "parity": "all", "target_sha256": ff.tensor_sha256(T)}
    good = legacy_file(tmp_path / "old.npz", fit, named)
    loaded, meta = load_factors(good, expect={"target_sha256": ff.target_id(1)}, recheck=False)
    np.testing.assert_array_equal(loaded.A, fit.A)
    # an altered legacy file cannot hide behind the missing hash: the re-check is mandatory
    bad_fit = CPFit(A=2 * fit.A, B=fit.B, C=fit.C, relative_error=fit.relative_error)
    bad = legacy_file(tmp_path / "bad.npz", bad_fit, named)
    one_line_error(bad, "stored relative_error", recheck=False)
    # a legacy file that names no tensor is refused, with the way out
    unnamed = legacy_file(tmp_path / "unnamed.npz", fit, {})
    message = one_line_error(unnamed, "upgrade_factor_file")
    assert "older tdn_theory" in message
    # ... which re-saves it with the arrays bit-identical, after a check against the target
    with pytest.raises(FactorFileError, match="target"):
        ff.upgrade_factor_file(unnamed)
    with pytest.raises(FactorFileError, match="give"):
        ff.upgrade_factor_file(unnamed, target=2 * T)
    ff.upgrade_factor_file(unnamed, target=T)
    upgraded, meta = load_factors(unnamed)
    assert meta["format"] == ff.FORMAT
    for a, b in zip(upgraded.factors, fit.factors, strict=True):
        assert a.tobytes() == b.tobytes()


def test_save_checks_the_error_it_stores(tmp_path, fitted):
    T, fit = fitted
    lying = CPFit(A=fit.A, B=fit.B, C=fit.C, relative_error=1e-16)
    meta = {"L": 1, "normalization": "unit", "parity": "all"}
    with pytest.raises(FactorFileError, match="give"):
        save_factors(tmp_path / "f.npz", lying, meta)  # against the named tensor
    with pytest.raises(FactorFileError, match="given target"):
        save_factors(tmp_path / "f.npz", lying, {}, target=T)
    with pytest.raises(FactorFileError, match="cg_tensor"):  # mislabelled: fits unit, says cg
        save_factors(tmp_path / "f.npz", fit, {**meta, "normalization": "cg"})
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path, fitted, monkeypatch):
    path = save(tmp_path, fitted)
    before = path.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ff.np, "savez", broken_savez)
    with pytest.raises(FactorFileError, match="No space left"):
        save(tmp_path, fitted)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz"]


def test_interrupted_write_leaves_no_temporary(tmp_path, fitted, monkeypatch):
    """Item 14: a SIGTERM handler that raises (as the CLI installs) reaches the cleanup."""

    def interrupted_savez(*args, **kwargs):
        raise SystemExit(143)

    monkeypatch.setattr(ff.np, "savez", interrupted_savez)
    with pytest.raises(SystemExit):
        save(tmp_path, fitted)
    assert list(tmp_path.iterdir()) == []


def test_bad_save_arguments(tmp_path, fitted):
    T, fit = fitted
    with pytest.raises(FactorFileError, match="does not exist"):
        save_factors(tmp_path / "nope" / "f.npz", fit, {})
    with pytest.raises(FactorFileError, match="contradicts"):
        save_factors(tmp_path / "f.npz", fit, {"rank": 7})
    with pytest.raises(FactorFileError, match="target shape"):
        save_factors(tmp_path / "f.npz", fit, {}, target=np.ones((2, 2, 2)))
    with pytest.raises(FactorFileError, match="JSON"):
        save_factors(tmp_path / "f.npz", fit, {"x": object()})
    with pytest.raises(FactorFileError, match="trailing slash"):
        save_factors(str(tmp_path / "nope") + "/", fit, {})
    empty = CPFit(A=fit.A[:, :0], B=fit.B[:, :0], C=fit.C[:, :0], relative_error=1.0)
    with pytest.raises(FactorFileError, match="empty"):
        save_factors(tmp_path / "f.npz", empty, {})
    with pytest.raises(FactorFileError, match="L must be"):
        save_factors(tmp_path / "f.npz", fit, {"L": "1", "normalization": "unit", "parity": "all"})
    assert not any(tmp_path.iterdir())


def _special_files(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    yield fifo, stat.S_ISFIFO
    target = tmp_path / "target.npz"
    target.write_bytes(b"keep me")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    yield link, stat.S_ISLNK
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    yield folder, stat.S_ISDIR
    null = tmp_path / "mynull"
    try:
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):
        return  # creating device nodes needs privileges
    yield null, stat.S_ISCHR


def test_special_files_are_never_replaced(tmp_path, fitted):
    """Item 1: a device node, FIFO, symlink or folder as destination is refused, left untouched."""
    _, fit = fitted
    for path, is_kind in _special_files(tmp_path):
        with pytest.raises(FactorFileError, match="refusing to replace") as info:
            save_factors(path, fit, {})
        assert "\n" not in str(info.value)
        assert is_kind(os.lstat(path).st_mode)
    assert (tmp_path / "target.npz").read_bytes() == b"keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_file_mode_follows_the_umask_and_an_overwritten_file(tmp_path, fitted):
    """Item 8: new files get 0o666 & ~umask; an overwritten file keeps its mode."""
    old = os.umask(0o022)
    try:
        path = save(tmp_path, fitted)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.chmod(path, 0o640)
        save(tmp_path, fitted)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        os.umask(0o077)
        other = save(tmp_path, fitted, name="g.npz")
        assert stat.S_IMODE(other.stat().st_mode) == 0o600
    finally:
        os.umask(old)


COMMITTED = sorted(RESULTS.glob("*.npz"))


def test_committed_factor_files_verify():
    """Item 4: every committed factor file is in the current format, its target_sha256 is the
    definition hash, its content hash matches and its stored error is re-checked numerically."""
    assert len(COMMITTED) >= 34
    for path in COMMITTED:
        with np.load(path) as data:
            raw = json.loads(str(data["meta"]))
        assert raw["format"] == ff.FORMAT, path.name
        named = (raw["L"], raw["normalization"], raw["parity"])
        fit, meta = load_factors(path, expect={"target_sha256": ff.target_id(*named)}, recheck=True)
        T = cg_tensor(*named)
        err = np.linalg.norm(T - fit.to_tensor()) / np.linalg.norm(T)
        assert abs(err - meta["relative_error"]) <= ff.ERROR_ATOL, path.name


def test_layer_from_file_refuses_altered_and_empty_files(tmp_path, exact_L2):
    """Items 2 and 12 through the layer: CPTensorProduct.from_file reads via load_factors, so an
    altered file (the issue's 2A) or a zero-rank file is refused with a message naming it."""
    pytest.importorskip("torch")  # the layer needs torch
    from tdn_theory.nn import CPTensorProduct

    arrays, meta = read_raw(exact_L2)
    altered = write_raw(tmp_path / "g.npz", {**arrays, "A": 2 * arrays["A"]}, meta)
    empty = write_raw(
        tmp_path / "e.npz", {k: v[:, :0] for k, v in arrays.items()}, {**meta, "rank": 0}
    )
    for path in (altered, empty):
        with pytest.raises(FactorFileError) as info:
            CPTensorProduct.from_file(path, expect={"L": 2})
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    layer = CPTensorProduct.from_file(exact_L2, expect={"L": 2})
    assert layer.rank == 30
