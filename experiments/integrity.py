"""What the integrity checks cost, and how Haar the rotation strategy is.

Usage: ``python -m experiments.integrity [--draws 3000] [--repeats 5]``.
Writes experiments/results/integrity.json:

* ``factor_recheck``: for committed factor files (L = 4, 5, 6), the median wall time of
  ``load_factors`` with the content hash only (``recheck=False``) and with the numeric re-check of
  the stored error against ``cg_tensor`` (``recheck=True``; the CG blocks are warm in memory), and
  the difference (the cost of the re-check);
* ``cache_verify``: a fresh process building ``cg_tensor(8)`` from the disk cache, each block
  verified (checksum and orthogonality relation), against the same with verification off;
* ``rotations``: the rotation angle of draws through ``@given`` (derandomized, so reproducible)
  from the current ``tdn_theory.testing.strategies.rotations()`` and from the former float-based
  strategy (Shoemake's map of three Hypothesis floats, rebuilt here for the comparison): the KS
  statistic against the Haar law (density (1 - cos t) / pi), the share of draws within 0.05 of
  angle pi (Haar: 3.18%) and max |E[R]| (Haar: 0); plus the seeded sampler ``haar_rotation`` over
  explicit seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.transform import Rotation

from experiments import _common
from experiments._io import RESULTS
from tdn_theory.cp import load_factors
from tdn_theory.testing import strategies

FILES = ("exact_unit_all_L4.npz", "scaled_sphere_unit_all_L5.npz", "scaled_sphere_unit_all_L6.npz")

_CACHE_CHILD = """
import json, sys, time
from tdn_theory.so3 import cache, cg_tensor
if sys.argv[1] == "off":
    real_load = cache.load
    cache.load = lambda name, shape, validate=None: real_load(name, shape)
t0 = time.perf_counter()
cg_tensor(8)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def factor_recheck(repeats: int) -> list[dict]:
    rows = []
    for name in FILES:
        path = RESULTS / "factors" / name
        fit, meta = load_factors(path, recheck=True)  # warms the CG blocks
        hash_only = _median_seconds(lambda p=path: load_factors(p, recheck=False), repeats)
        full = _median_seconds(lambda p=path: load_factors(p, recheck=True), repeats)
        rows.append(
            {
                "file": name,
                "L": meta["L"],
                "rank": meta["rank"],
                "d3_R": int(np.prod(meta["shape"]) * meta["rank"]),
                "load_hash_only_s": hash_only,
                "load_with_recheck_s": full,
                "recheck_s": full - hash_only,
            }
        )
    return rows


def cache_verify() -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, TDN_THEORY_CACHE=folder)
        run = [sys.executable, "-c", _CACHE_CHILD]
        out["cold_s"] = json.loads(
            subprocess.run([*run, "on"], env=env, capture_output=True, text=True, check=True).stdout
        )["seconds"]
        for mode in ("on", "off"):
            result = subprocess.run(
                [*run, mode], env=env, capture_output=True, text=True, check=True
            )
            out[f"warm_verify_{mode}_s"] = json.loads(result.stdout)["seconds"]
    out["note"] = (
        "cg_tensor(8) in a fresh process; cold = empty disk cache (sympy); warm = from "
        "the disk cache, with (on) and without (off) the orthogonality check of each "
        "block (the checksum is always verified)"
    )
    return out


def _former_rotations() -> st.SearchStrategy[np.ndarray]:
    """The former rotation strategy: Shoemake's map applied to three Hypothesis floats in [0, 1]."""

    def shoemake(u1: float, u2: float, u3: float) -> np.ndarray:
        a, b = math.sqrt(1.0 - u1), math.sqrt(u1)
        q = [
            a * math.sin(2 * math.pi * u2),
            a * math.cos(2 * math.pi * u2),
            b * math.sin(2 * math.pi * u3),
            b * math.cos(2 * math.pi * u3),
        ]
        return Rotation.from_quat(q).as_matrix()

    unit = st.floats(0.0, 1.0, allow_nan=False)
    special = st.sampled_from(
        [np.eye(3), np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])]
    )
    return st.one_of(special, st.builds(shoemake, unit, unit, unit))


def _draw_through_given(strategy, n: int) -> np.ndarray:
    drawn = []

    @settings(
        max_examples=n,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(R):
        drawn.append(np.asarray(R))

    collect()
    return np.array(drawn)


def _angle_stats(Rs: np.ndarray) -> dict:
    t = np.arccos(np.clip((np.trace(Rs, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0))
    ks = stats.kstest(t, lambda s: (s - np.sin(s)) / np.pi)
    return {
        "draws": len(t),
        "ks_statistic": float(ks.statistic),
        "ks_pvalue": float(ks.pvalue),
        "share_within_0.05_of_pi": float(np.mean(t > np.pi - 0.05)),
        "max_abs_mean_entry": float(np.abs(Rs.mean(axis=0)).max()),
        "distinct": len({R.tobytes() for R in Rs}),
    }


def rotation_stats(n: int) -> dict:
    return {
        "haar_share_within_0.05_of_pi": (0.05 + math.sin(0.05)) / math.pi,
        "current_given": _angle_stats(_draw_through_given(strategies.rotations(), n)),
        "former_given": _angle_stats(_draw_through_given(_former_rotations(), n)),
        "seeded_sampler": _angle_stats(
            np.array([strategies.haar_rotation([s, 7]) for s in range(n)])
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.integrity")
    _common.add_common_args(parser)
    parser.add_argument(
        "--draws", type=int, default=None, help="rotation draws (default 3000; quick 300)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timing repeats (default 5; quick 1)"
    )
    args = parser.parse_args(argv)
    draws = args.draws if args.draws is not None else (300 if args.quick else 3000)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)
    if draws < 10 or repeats < 1:
        parser.error("--draws must be >= 10 and --repeats >= 1")
    out = _common.output_dir(args)
    run = _common.Run("integrity", args, argv)
    result = {
        "factor_recheck": factor_recheck(repeats),
        "cache_verify": cache_verify(),
        "rotations": rotation_stats(draws),
    }
    run.write(out, result)
    print(json.dumps({k: result[k] for k in ("factor_recheck", "rotations")}, indent=1))
    print(f"wrote {out / 'integrity.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
