"""Hypothesis fuzz tests of hostile input: every case ends in a one-line error (exit 2 /
FactorFileError naming the file) or in a correct result; never a traceback, never a wrong number.

* load_factors on a valid file with random byte flips, altered arrays, removed or changed
  metadata fields;
* the fit_cp command line (main(argv) in-process) on random argument vectors from its grammar.
"""

import contextlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tdn_theory import fit_cp as cli
from tdn_theory.cp import FactorFileError, load_factors, save_factors
from tdn_theory.cp.tensor_ops import cp_to_tensor, relative_error
from tdn_theory.so3 import cg_tensor

FACTORS = Path(__file__).resolve().parents[1] / "experiments" / "results" / "factors"
FUZZ = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A valid file (the exact L = 1 rank-8 unit/all factors) and what loading it gives."""
    folder = tmp_path_factory.mktemp("fuzz")
    fit, meta = load_factors(FACTORS / "exact_unit_all_L1.npz")
    path = save_factors(folder / "good.npz", fit, meta)
    fit, meta = load_factors(path)
    with np.load(path) as data:
        arrays = {k: np.array(data[k]) for k in ("A", "B", "C")}
    return {
        "folder": folder,
        "bytes": path.read_bytes(),
        "fit": fit,
        "meta": meta,
        "arrays": arrays,
    }


def check_outcome(path, original):
    """FactorFileError with one line naming the file, or exactly the original content."""
    try:
        fit, meta = load_factors(path)
    except FactorFileError as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message, message
        return "refused"
    for got, want in zip(fit.factors, original["fit"].factors, strict=True):
        assert got.tobytes() == want.tobytes()
    assert meta == original["meta"]
    return "accepted"


@FUZZ
@given(data=st.data())
def test_byte_flips(original, data):
    raw = bytearray(original["bytes"])
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.integers(0, len(raw) - 1))
        raw[where] ^= data.draw(st.integers(1, 255))
    path = original["folder"] / "flipped.npz"
    path.write_bytes(bytes(raw))
    event(check_outcome(path, original))


_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3).map(float))


@FUZZ
@given(data=st.data())
def test_altered_arrays(original, data):
    arrays = {k: v.copy() for k, v in original["arrays"].items()}
    name = data.draw(st.sampled_from(["A", "B", "C"]))
    how = data.draw(
        st.sampled_from(
            ["entry", "scale", "swap", "permute", "transpose", "dtype", "drop_column", "random"]
        )
    )
    F = arrays[name]
    if how == "entry":
        i = data.draw(st.integers(0, F.shape[0] - 1))
        j = data.draw(st.integers(0, F.shape[1] - 1))
        F[i, j] = data.draw(_values)
    elif how == "scale":
        arrays[name] = F * data.draw(_values)
    elif how == "swap":
        other = data.draw(st.sampled_from(sorted({"A", "B", "C"} - {name})))
        arrays[name], arrays[other] = arrays[other], arrays[name]
    elif how == "permute":
        perm = data.draw(st.permutations(range(F.shape[0])))
        arrays[name] = F[list(perm)]
    elif how == "transpose":
        arrays[name] = F.T
    elif how == "dtype":
        arrays[name] = F.astype(data.draw(st.sampled_from([np.float32, np.float16, np.int64])))
    elif how == "drop_column":
        arrays[name] = F[:, 1:]
    else:
        seed = data.draw(st.integers(0, 2**32 - 1))
        arrays[name] = np.random.default_rng(seed).normal(size=F.shape)
    path = original["folder"] / "altered.npz"
    np.savez(path, **arrays, meta=np.array(json.dumps(original["meta"])))
    event(check_outcome(path, original))


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**20) | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


@FUZZ
@given(data=st.data())
def test_removed_or_changed_meta_fields(original, data):
    meta = dict(original["meta"])
    for _ in range(data.draw(st.integers(1, 2))):
        key = data.draw(st.sampled_from(sorted(meta) + ["L", "extra"]))
        if data.draw(st.booleans()):
            meta.pop(key, None)
        else:
            meta[key] = data.draw(_json)
    path = original["folder"] / "meta.npz"
    as_text = data.draw(st.booleans())
    entry = np.array(json.dumps(meta)) if as_text else np.array(data.draw(_json), dtype=object)
    try:
        np.savez(path, **original["arrays"], meta=entry)
    except ValueError:  # numpy cannot store this value without pickling
        return
    event(check_outcome(path, original))


# ---------------------------------------------------------------- the command line

_bad_int = st.one_of(
    st.integers(-3, 0).map(str),
    st.sampled_from(["", " ", "1.5", "2e0", "x", "nan", "inf", "0x10", "\u0661", "--json"]),
    st.integers(10**15, 10**40).map(str),
)
#: option -> (valid values, invalid or hostile values); valid runs stay small and short
OPTIONS = {
    "--L": (st.integers(0, 2).map(str), st.sampled_from(["-1", "21", "99", "1e9", "one", ""])),
    "--rank": (st.sampled_from(["1", "2", "3", "4", "auto"]), _bad_int),
    "--normalization": (
        st.sampled_from(["unit", "cg", "gaunt", "sphere"]),
        st.sampled_from(["UNIT", "bogus", ""]),
    ),
    "--parity": (st.sampled_from(["all", "even", "odd"]), st.sampled_from(["none", "ALL"])),
    "--restarts": (st.sampled_from(["1", "2", "1000000000"]), _bad_int),
    "--seed": (st.integers(0, 3).map(str), st.sampled_from(["-2", "1.0", "x"])),
    "--time-budget": (
        st.sampled_from(["0.2", "1e-9"]),
        st.sampled_from(["0", "-1", "nan", "inf", "x", ""]),
    ),
    "--rotations": (st.integers(1, 4).map(str), st.sampled_from(["0", "-1", "1000000000000"])),
}
FLAGS = (
    st.sampled_from(["--json", "--quiet"]),
    st.sampled_from(["--bogus", "-x", "--L=1", "--time", "positional", "--help=no"]),
)
OUT_KINDS = (
    st.sampled_from(["file", "none"]),
    st.sampled_from(["folder/", "missing/f.npz", "existing_folder"]),
)


def _maybe_hostile(draw, choices):
    good, bad = choices
    return draw(bad if draw(st.integers(0, 9)) == 5 else good)  # (0 and 9 are drawn often)


@st.composite
def argument_vectors(draw):
    pairs = []
    for option, choices in OPTIONS.items():
        required = option in ("--L", "--rank")
        if required or draw(st.booleans()):
            pairs.append([option, _maybe_hostile(draw, choices)])
    if not any(p[0] == "--time-budget" for p in pairs):  # the default budget is 60 s
        pairs.append(["--time-budget", "0.3"])
    if draw(st.integers(0, 9)) == 5 and len(pairs) > 1:  # a required option missing
        pairs = pairs[1:]
    order = draw(st.permutations(range(len(pairs))))
    argv = [x for i in order for x in pairs[i]]
    for _ in range(draw(st.integers(0, 2))):
        argv.append(_maybe_hostile(draw, FLAGS))
    return argv, _maybe_hostile(draw, OUT_KINDS)


@settings(
    max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(case=argument_vectors())
def test_command_line(case):
    argv, out_kind = case
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "existing_folder").mkdir()
        target = {
            "file": folder / "f.npz",
            "folder/": str(folder / "new") + "/",
            "missing/f.npz": folder / "missing" / "f.npz",
            "existing_folder": folder / "existing_folder",
            "none": None,
        }[out_kind]
        full = argv + ([] if target is None else ["--out", str(target)])
        stdout, stderr = io.StringIO(), io.StringIO()
        with (
            contextlib.chdir(folder),
            contextlib.redirect_stdout(stdout),
            contextlib.redirect_stderr(stderr),
        ):
            code = cli.main(full)
        out, err = stdout.getvalue(), stderr.getvalue()
        written = sorted(p.name for p in folder.iterdir() if p.name != "existing_folder")
        event(f"exit {code}" if code == 0 else f"exit {code}: {err.split(':')[2][:30]}")
        if code == 2:
            assert out == "" and err.count("\n") == 1 and "fit_cp: error:" in err, (full, err)
            assert written == [] and list((folder / "existing_folder").iterdir()) == []
            return
        assert code == 0, (full, err)
        assert len(written) == 1 and written[0].endswith(".npz"), written
        path = folder / written[0]
        fit, meta = load_factors(path, recheck=True)  # hash and error re-check
        T = cg_tensor(meta["L"], meta["normalization"], meta["parity"])
        rel = relative_error(T, cp_to_tensor(fit.A, fit.B, fit.C))
        if "--json" in full:
            report = json.loads(out)
            assert report["relative_error"] == pytest.approx(rel, rel=1e-9, abs=1e-15)
            assert report["lower_bound"] <= report["relative_error"] + 1e-12
        else:
            assert "relative error" in out
