"""Factor files (.npz with A, B, C, meta): round trip, consistency checks, atomic writes."""

import json

import numpy as np
import pytest

from tdn_theory.cp import CPFit, FactorFileError, fit_cp, load_factors, save_factors
from tdn_theory.cp import factor_files as ff
from tdn_theory.so3 import cg_tensor


@pytest.fixture(scope="module")
def fitted():
    T = cg_tensor(1)
    fit = fit_cp(T, 5, seed=2, restarts=2, max_iter=60, refine_iter=50, polish_iter=20)
    return T, fit


def save(tmp_path, fitted, name="f.npz", **extra):
    T, fit = fitted
    meta = {"L": 1, "normalization": "unit", "parity": "all", **extra}
    return save_factors(tmp_path / name, fit, meta, target=T)


def test_round_trip(tmp_path, fitted):
    T, fit = fitted
    path = save(tmp_path, fitted)
    loaded, meta = load_factors(path)
    assert isinstance(loaded, CPFit)
    for a, b in zip(loaded.factors, fit.factors, strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.relative_error == fit.relative_error and loaded.seed == 2
    for key in ("L", "rank", "normalization", "parity", "relative_error", "seed",
                "package_version", "target_sha256", "format", "shape"):
        assert key in meta
    assert meta["rank"] == 5 and meta["shape"] == [4, 4, 4]
    assert meta["target_sha256"] == ff.tensor_sha256(T)
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
    T, _ = fitted
    load_factors(path, expect={"L": 1, "rank": 5, "target_sha256": ff.tensor_sha256(T)})
    with pytest.raises(FactorFileError, match="expected"):
        load_factors(path, expect={"normalization": "gaunt"})
    with pytest.raises(FactorFileError, match="lacks"):
        load_factors(path, expect={"nonexistent": 1})
    with pytest.raises(FactorFileError, match="target_sha256"):
        load_factors(path, expect={"target_sha256": ff.tensor_sha256(2 * T)})


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def good_arrays(fitted):
    _, fit = fitted
    meta = {"format": ff.FORMAT, "rank": 5, "relative_error": 0.1, "shape": [4, 4, 4], "L": 1}
    return {"A": fit.A, "B": fit.B, "C": fit.C, "meta": np.array(json.dumps(meta))}, meta


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda a, m: a.pop("C"), "lacks the entries"),
        (lambda a, m: a.update(meta=np.array("{not json")), "not valid JSON"),
        (lambda a, m: a.update(meta=np.array("[1, 2]")), "JSON object"),
        (lambda a, m: a.update(B=a["B"][:, :4]), "different numbers of columns"),
        (lambda a, m: a.update(A=np.full_like(a["A"], np.nan)), "NaN"),
        (lambda a, m: a.update(A=a["A"].ravel()), "2-D float"),
        (lambda a, m: a.update(meta=np.array(json.dumps({**m, "rank": 6}))), "rank"),
        (lambda a, m: a.update(meta=np.array(json.dumps({**m, "L": 2}))), "L = 2"),
        (lambda a, m: a.update(meta=np.array(json.dumps({**m, "format": "x"}))), "format"),
        (lambda a, m: a.update(meta=np.array(json.dumps({"rank": 5}))), "meta lacks"),
    ],
)
def test_inconsistent_files_are_refused(tmp_path, fitted, mutate, match):
    arrays, meta = good_arrays(fitted)
    mutate(arrays, meta)
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(FactorFileError, match=match) as info:
        load_factors(path)
    assert "\n" not in str(info.value)


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
    assert not any(tmp_path.iterdir())


def test_sha256_depends_on_values_and_shape():
    a = np.arange(8.0)
    assert ff.tensor_sha256(a.reshape(2, 2, 2)) != ff.tensor_sha256(a.reshape(2, 4, 1))
    assert ff.tensor_sha256(a.reshape(2, 2, 2)) == ff.tensor_sha256(a.reshape(2, 2, 2).copy())
    b = a.copy()
    b[3] = np.nextafter(b[3], np.inf)  # one ulp
    assert ff.tensor_sha256(a) != ff.tensor_sha256(b)
