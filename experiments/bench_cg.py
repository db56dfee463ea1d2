"""Cold and warm cost of the real CG blocks, and their deviation from e3nn.

Usage: ``python -m experiments.bench_cg [--max-L 8]``. Writes experiments/results/bench_cg.json.
"Cold" uses an empty temporary cache folder in a fresh process (every block from sympy);
"warm" is a second fresh process reading the disk cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from experiments import _common

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from tdn_theory.so3 import cg_tensor, paths, real_cg
t1 = time.perf_counter()
L = int(sys.argv[1])
for path in paths(L):
    real_cg(*path)
t2 = time.perf_counter()
cg_tensor(L)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "all_blocks_s": t2 - t1, "cg_tensor_s": t3 - t2}))
"""


def _run(L: int, cache: str) -> dict:
    env = dict(os.environ, TDN_THEORY_CACHE=cache)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(L)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def deviation_from_e3nn(L: int) -> float:
    """Largest |real_cg - sqrt(2 l3 + 1) wigner_3j| over all paths with degrees <= L."""
    import math

    import numpy as np
    import torch
    from e3nn import o3

    from tdn_theory.so3 import paths, real_cg

    worst = 0.0
    for l1, l2, l3 in paths(L):
        ref = math.sqrt(2 * l3 + 1) * o3.wigner_3j(l1, l2, l3, dtype=torch.float64).numpy()
        worst = max(worst, float(np.abs(real_cg(l1, l2, l3) - ref).max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(parser)
    parser.add_argument("--max-L", type=int, default=None, help="largest degree (8; quick 4)")
    args = parser.parse_args(argv)
    max_L = args.max_L if args.max_L is not None else (4 if args.quick else 8)
    if not 1 <= max_L <= 20:
        parser.error(f"--max-L must lie in 1..20, got {max_L}")
    out = _common.output_dir(args)
    run = _common.Run("bench_cg", args, argv)
    with tempfile.TemporaryDirectory() as cache:
        cold = _run(max_L, cache)
        warm = _run(max_L, cache)
    result = {
        "max_L": max_L,
        "cold": cold,
        "warm": warm,
        "max_abs_deviation_from_e3nn": deviation_from_e3nn(max_L),
    }
    run.write(out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
