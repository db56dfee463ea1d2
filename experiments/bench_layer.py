"""Benchmark the TDN (CP) layer against every exact alternative, all interleaved in one run.

For each L and each channel count C, one process times on the same inputs (N edges x C channels,
input 2 with one channel: the spherical harmonics of the edge direction):

- ``edge_frame``: EdgeFrameTensorProduct, the exact product with y = Y(r̂) in the edge frame
  (rotate into the frame of r̂, sparse m-block contraction, rotate back; O(C L^3) per edge). It
  takes the edge vectors; every other method takes y = Y(r̂) precomputed (not timed);
- ``dense_cg``: CGTensorProduct, y contracted with the CG tensor first (2 N d^3 + 2 N C d^2 flops);
- ``dense_cg_outer``: the per-channel dense contraction (x ⊗ y) @ M (2 N C d^3 flops), the cost of
  the dense CG product when input 2 cannot be contracted first;
- ``cp_7L2``: CPTensorProduct at R = 7 L^2 (the paper's rank; approximate);
- ``cp_exact``: CPTensorProduct at the smallest exact rank known here: 8 (L=1) and 30 (L=2) from
  Levenberg-Marquardt fits (the rank atlas, proofs/rank_bounds.md); for L >= 3 the constructive rank d^2 (Thm 3.2);
- ``cp_sphere``: CPTensorProduct with the exact sphere-rule factors (rank 3N) of the "sphere"
  normalization (an exactly equivariant product with other path weights than "unit");
- ``e3nn_uvu``: e3nn's TensorProduct, mode "uvu", every path, one weight per channel shared by
  all paths (tdn_theory.nn.e3nn_tensor_product; inputs already in e3nn's layout);
- ``cuequivariance``: cuequivariance_torch.ChannelWiseTensorProduct over the same paths (SO3
  irreps, per-sample weights), method "naive" on CPU (its PyTorch path) and the library's default
  (fused kernels where the segments allow) on CUDA. Its output keeps one block per path (not
  summed over paths with the same l3). Optional: ``pip install 'tdn_theory[cuequivariance]'``;
  without it the method is recorded as "not installed".

The CP layers ``cp_7L2`` and ``cp_exact`` use random factors of the right shape (seeded): the fit
quality does not change the work. Every timing is the median of repeated calls after a warm-up,
for forward (torch.no_grad) and forward+backward (gradients for x, y or the edge vectors, and
weight), eager and, for ``--compile-methods`` at the first channel count, under torch.compile.
Alongside each (L, C) the script times a large float32 matrix multiply, the machine's practical
rate: each forward gets its GFLOP/s against it, and a flop-model time (the method's forward flops
at the same-run matmul rate) to set beside the measured one. Each round calls every variant once,
so that all methods see the same machine load. On CPU the edges are reduced for large L and
scaled by 64 / C (CPU_EDGE_SCHEDULE); everywhere an (N, C, d^2) intermediate stays within
``--memory-gb``. Minor page faults per call are recorded (a fresh multi-MB temporary that the C
library returned to the OS costs ~1800 faults, several ms, on the 2-core VM).

    python -m experiments.bench_layer                     # CPU -> results/bench_layer_cpu.{json,png,md}
    python -m experiments.bench_layer --quick --out DIR   # about a minute
    python -m experiments.bench_layer --device cuda       # on a CUDA machine -> bench_layer_cuda.*
    python -m experiments.readme                          # experiments/README.md tables from the JSON
"""

from __future__ import annotations

import os

# On a shared CPU, OpenMP threads that spin at barriers while their partner is descheduled turn
# thousands of small parallel regions into seconds; a passive wait policy avoids it. Set before
# torch loads OpenMP; an explicit setting in the environment wins. Recorded in the JSON.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments import _io
from tdn_theory import so3
from tdn_theory.nn import (
    CGTensorProduct,
    CPTensorProduct,
    EdgeFrameTensorProduct,
    e3nn_path_weights,
    e3nn_tensor_product,
    to_e3nn_layout,
)

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
METHODS = (
    "edge_frame",
    "dense_cg",
    "dense_cg_outer",
    "cp_7L2",
    "cp_exact",
    "cp_sphere",
    "e3nn_uvu",
    "cuequivariance",
)
#: Methods that compute the exact "unit" CG product (cp_exact: the shape of an exact CP).
EXACT_METHODS = (
    "edge_frame",
    "dense_cg",
    "dense_cg_outer",
    "cp_exact",
    "e3nn_uvu",
    "cuequivariance",
)
#: Edges per L on CPU at 64 channels (scaled by 64 / C): one e3nn forward+backward call stays
#: near 1-2 s on one core of the 2-core VM (measured there: 5e-5, 2.3e-4, 6.9e-4, 1.5e-3, 4.1e-3,
#: 7.9e-3 s per edge at 64 channels for L = 1..6).
CPU_EDGE_SCHEDULE = {1: 20000, 2: 6000, 3: 2000, 4: 1000, 5: 400, 6: 250}
#: Smallest exact CP ranks of the "unit", all-path CG tensor found here (the rank atlas, proofs/rank_bounds.md).
KNOWN_EXACT_RANK = {1: 8, 2: 30}
QUICK = {"L": [1, 2, 3], "channels": [16, 64], "edge_scale": 0.1, "rounds": 2, "matmul_size": 512}


class OuterDenseCG(torch.nn.Module):
    """out[n, c, k] = w[n, c] * sum_{ij} M[k, i, j] x[n, c, i] y[n, j] via the outer product.

    Builds x ⊗ y per channel, shape (N, C, d*d), and multiplies by M as a (d*d, d) matrix.
    """

    def __init__(self, L: int, dtype: torch.dtype) -> None:
        super().__init__()
        M = torch.from_numpy(so3.cg_tensor(L)).to(dtype)
        d = M.shape[0]
        self.d = d
        self.register_buffer("M_ij_k", M.permute(1, 2, 0).reshape(d * d, d).contiguous())

    def forward(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        outer = (x.unsqueeze(-1) * y[..., None, None, :]).flatten(-2)  # (N, C, d*d)
        return torch.matmul(outer, self.M_ij_k) * weight.unsqueeze(-1)


def cuequivariance_layer(L: int, channels: int, dtype: torch.dtype, device: torch.device):
    """cuequivariance's ChannelWiseTensorProduct over every path, or the reason it is missing."""
    try:
        import cuequivariance as cue
        import cuequivariance_torch as cuet
    except ImportError:
        return None, "not installed (pip install 'tdn_theory[cuequivariance]')"
    irreps_1 = cue.Irreps("SO3", "+".join(f"{channels}x{l}" for l in range(L + 1)))
    irreps_2 = cue.Irreps("SO3", "+".join(f"1x{l}" for l in range(L + 1)))
    method = "naive" if device.type == "cpu" else None
    layer = cuet.ChannelWiseTensorProduct(
        irreps_1,
        irreps_2,
        [cue.SO3(l) for l in range(L + 1)],
        layout=cue.mul_ir,
        shared_weights=False,
        internal_weights=False,
        dtype=dtype,
        device=device,
        method=method,
    )
    return layer, method or "library default"


def e3nn_flops(L: int, n: int, c: int) -> int:
    """Arithmetic of a path-by-path product: per (l1, l2) an outer product, per path a contraction."""
    path_list = so3.paths(L)
    pairs = {(l1, l2) for (l1, l2, _) in path_list}
    outer = sum(n * c * (2 * l1 + 1) * (2 * l2 + 1) for (l1, l2) in pairs)
    contract = sum(
        2 * n * c * (2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1) for (l1, l2, l3) in path_list
    )
    return outer + contract


def cp_flops(L: int, n: int, c: int, rank: int) -> int:
    d = (L + 1) ** 2
    return 2 * n * c * d * rank + 2 * n * d * rank + n * c * rank + 2 * n * c * rank * d


def flops(method: str, L: int, n: int, c: int, rank: int | None) -> int:
    """Forward floating point operations (weight multiplication not counted)."""
    d = (L + 1) ** 2
    if method in ("e3nn_uvu", "cuequivariance"):
        return e3nn_flops(L, n, c)
    if method == "dense_cg":
        return 2 * n * d**3 + 2 * n * c * d**2
    if method == "dense_cg_outer":
        return n * c * d * d + 2 * n * c * d**3
    if method == "edge_frame":
        return EdgeFrameTensorProduct(L).flops(n, c)
    assert rank is not None
    return cp_flops(L, n, c, rank)


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0


def run_once(fn: Callable[[], Any], sync: Callable[[], None]) -> tuple[float, int]:
    """Wall seconds of one call (device work included) and the minor page faults it took."""
    faults = minor_faults()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0, minor_faults() - faults


def sample_stats(samples: list[float]) -> dict[str, Any]:
    q1, med, q3 = np.percentile(samples, [25, 50, 75])
    return {
        "median_s": float(med),
        "min_s": float(min(samples)),
        "iqr_s": [float(q1), float(q3)],
        "repeats": len(samples),
    }


def matmul_call(device: torch.device, size: int) -> Callable[[], Any]:
    """A float32 (size x size) @ (size x size) product: the practical peak rate."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device)
    b = torch.randn(size, size, generator=gen).to(device)
    return lambda: torch.mm(a, b)


def build_layers(L: int, channels: int, dtype: torch.dtype, device: torch.device, seed: int):
    """The timed modules, per-method information, and the reason for any missing method."""
    from tdn_theory.cp import sphere_cp

    d = (L + 1) ** 2
    gen = torch.Generator().manual_seed(seed + L)

    def random_cp(rank: int) -> CPTensorProduct:
        factors = [
            torch.randn(d, rank, generator=gen, dtype=torch.float64) / math.sqrt(d) for _ in "ABC"
        ]
        return CPTensorProduct(*factors, dtype=dtype, device=device)

    exact_rank = KNOWN_EXACT_RANK.get(L, d * d)
    sphere = sphere_cp(L)
    layers: dict[str, Any] = {
        "edge_frame": EdgeFrameTensorProduct(L, dtype=dtype, device=device),
        "dense_cg": CGTensorProduct(L, dtype=dtype, device=device),
        "dense_cg_outer": OuterDenseCG(L, dtype).to(device),
        "cp_7L2": random_cp(7 * L * L),
        "cp_exact": random_cp(exact_rank),
        "cp_sphere": CPTensorProduct(*sphere.factors, dtype=dtype, device=device),
        "e3nn_uvu": e3nn_tensor_product(L, channels, dtype=dtype).to(device),
    }
    cue_layer, cue_note = cuequivariance_layer(L, channels, dtype, device)
    info: dict[str, dict[str, Any]] = {
        "cp_7L2": {"rank": 7 * L * L, "factors": "random (seeded), shape of a rank-7L^2 fit"},
        "cp_exact": {
            "rank": exact_rank,
            "factors": (
                "random (seeded), shape of the exact fit of DESIGN.md section 3"
                if L in KNOWN_EXACT_RANK
                else "random (seeded), shape of the constructive exact rank d^2 (Thm 3.2); "
                "no smaller exact rank known for this L"
            ),
        },
        "cp_sphere": {
            "rank": sphere.rank,
            "factors": "exact sphere-rule CP (tdn_theory.cp.sphere_cp), 'sphere' normalization",
        },
        "edge_frame": {"blocks": layers["edge_frame"].block_sizes},
        "cuequivariance": {"method": cue_note},
    }
    missing = {}
    if cue_layer is None:
        missing["cuequivariance"] = cue_note
    else:
        layers["cuequivariance"] = cue_layer
    return layers, info, missing


def make_inputs(method: str, L: int, n: int, channels: int, dtype, device, seed: int):
    """The arguments of a method: (x, y or edge_vec, weight) in that method's layout."""
    d = (L + 1) ** 2
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, d, generator=gen, dtype=torch.float64)
    edge_vec = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    w = torch.randn(n, channels, generator=gen, dtype=torch.float64)
    y = so3_harmonics(L, edge_vec)
    if method == "edge_frame":
        args = [x, edge_vec, w]
    elif method in ("e3nn_uvu", "cuequivariance"):
        args = [to_e3nn_layout(x), y, e3nn_path_weights(w, L)]
    else:
        args = [x, y, w]
    return [t.to(dtype=dtype, device=device).contiguous() for t in args]


def so3_harmonics(L: int, edge_vec: torch.Tensor) -> torch.Tensor:
    """Component-normalised spherical harmonics of the edges (e3nn's, the package's basis)."""
    from e3nn import o3

    return o3.spherical_harmonics(
        list(range(L + 1)), edge_vec, normalize=True, normalization="component"
    )


def timed_calls(
    module: Callable[..., torch.Tensor], inputs: list[torch.Tensor], grad_out: torch.Tensor
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(forward, forward_backward) closures of a module on fixed inputs.

    forward runs under torch.no_grad(); forward_backward back-propagates ``grad_out`` to all
    inputs (x, y or edge_vec, and weight), as in training with forces.
    """
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]

    def forward() -> None:
        with torch.no_grad():
            module(*inputs)

    def forward_backward() -> None:
        for t in leaves:
            t.grad = None
        module(*leaves).backward(grad_out)

    return forward, forward_backward


def choose_edges(L: int, channels: int, args: argparse.Namespace, dtype) -> dict[str, Any]:
    """Edges for (L, C): --edges, capped by the CPU schedule (scaled by 64 / C) and by memory.

    The memory cap keeps an (N, C, d^2) tensor (e3nn's and the outer product's intermediates)
    within --memory-gb.
    """
    d = (L + 1) ** 2
    itemsize = torch.empty((), dtype=dtype).element_size()
    by_memory = int(args.memory_gb * 2**30 // (channels * d * d * itemsize))
    if args.edge_schedule == "cpu":
        by_schedule = max(1, int(CPU_EDGE_SCHEDULE[L] * 64 / channels * args.edge_scale))
    else:
        by_schedule = args.edges
    n = max(1, min(args.edges, by_memory, by_schedule))
    return {"edges": n, "limit_memory": by_memory, "limit_schedule": by_schedule}


def fit_exponent(Ls: list[int], seconds_per_edge: list[float]) -> float | None:
    """Slope of log(time per edge) against log L (None with fewer than two points)."""
    if len(Ls) < 2:
        return None
    return float(np.polyfit(np.log(Ls), np.log(seconds_per_edge), 1)[0])


def all_or_none(values: list[bool]) -> bool | None:
    """all(values), or None when there is nothing to judge (e.g. no L >= 3 was run)."""
    return all(values) if values else None


def timed(entry: dict[str, Any], mode_key: str = "eager") -> dict[str, Any]:
    """The timing dict of a method entry in a mode ({} when it was not timed)."""
    value = entry.get(mode_key, {})
    return value if "forward" in value else {}


def summarize(results: dict[str, Any], Ls: list[int]) -> dict[str, Any]:
    """Ratios to e3nn, exponents, and the speed targets (CP faster than e3nn and the dense products; CP
    forward at >= 60 % of a same-round matmul) for one channel count."""
    summary: dict[str, Any] = {
        "ratios_e3nn_over_method": {},
        "exponents": {},
        "targets": {},
        "ratio_definition": "median time of e3nn_uvu EAGER / median time of the method in the "
        "given mode",
    }
    for mode_key in ("eager", "compiled"):
        for phase in ("forward", "forward_backward"):
            for method in METHODS:
                ratios, Lfit, per_edge = {}, [], []
                for L in Ls:
                    methods = results[str(L)]["methods"]
                    entry = timed(methods[method], mode_key)
                    base = timed(methods["e3nn_uvu"])
                    if entry and base:
                        ratios[str(L)] = base[phase]["median_s"] / entry[phase]["median_s"]
                    if entry:
                        Lfit.append(L)
                        per_edge.append(entry[phase]["median_s"] / results[str(L)]["edges"])
                key = f"{method}/{mode_key}/{phase}"
                summary["ratios_e3nn_over_method"][key] = ratios
                summary["exponents"][key] = {
                    "all_L": fit_exponent(Lfit, per_edge),
                    "L>=3": fit_exponent(
                        [L for L in Lfit if L >= 3],
                        [t for L, t in zip(Lfit, per_edge, strict=True) if L >= 3],
                    ),
                }
    targets = summary["targets"]
    for phase in ("forward", "forward_backward"):
        r = {m: summary["ratios_e3nn_over_method"][f"{m}/eager/{phase}"] for m in METHODS}
        if not r["cp_7L2"]:
            continue
        targets[f"eager/{phase}"] = {
            "cp_faster_than_e3nn_every_L": all_or_none([v > 1 for v in r["cp_7L2"].values()]),
            **{
                f"cp_faster_than_{m}_L>=3": all_or_none(
                    [r["cp_7L2"][L] > r[m][L] for L in r["cp_7L2"] if int(L) >= 3 and L in r[m]]
                )
                for m in ("dense_cg", "dense_cg_outer", "edge_frame")
            },
        }
    fractions = {}
    for L in Ls:
        entry = timed(results[str(L)]["methods"]["cp_7L2"])
        if entry:
            fractions[str(L)] = entry["forward"]["fraction_of_matmul"]
    targets["cp_forward_fraction_of_same_round_matmul_eager"] = fractions
    targets["cp_forward_60pct_of_same_round_matmul_L>=3_eager"] = all_or_none(
        [v >= 0.6 for L, v in fractions.items() if int(L) >= 3]
    )
    return summary


def decision_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (L, C): fastest exact method, CP at 7L^2, their ratio, and the flop model."""
    rows = []
    for C, per_L in report["results"].items():
        for L, result in per_L.items():
            methods = result["methods"]
            row: dict[str, Any] = {"L": int(L), "channels": int(C), "edges": result["edges"]}
            cp = timed(methods["cp_7L2"])
            if not cp:
                continue
            for phase in ("forward", "forward_backward"):
                exact = {
                    m: timed(methods[m])[phase]["median_s"]
                    for m in EXACT_METHODS
                    if timed(methods[m])
                }
                if not exact:
                    break
                best = min(exact, key=exact.__getitem__)
                row[phase] = {
                    "fastest_exact": best,
                    "fastest_exact_ms_per_1k_edges": exact[best] / result["edges"] * 1e6,
                    "cp_7L2_ms_per_1k_edges": cp[phase]["median_s"] / result["edges"] * 1e6,
                    "cp_over_fastest_exact": cp[phase]["median_s"] / exact[best],
                }
            if "forward_backward" not in row:
                continue
            model = {m: methods[m]["forward_flops"] for m in EXACT_METHODS}
            fewest = min(model, key=model.__getitem__)
            row["flop_model"] = {
                "fewest_flops_exact": fewest,
                "cp_over_fewest_exact": methods["cp_7L2"]["forward_flops"] / model[fewest],
            }
            rows.append(row)
    return sorted(rows, key=lambda r: (r["L"], r["channels"]))


def readme_tables(report: dict[str, Any]) -> str:
    """The README block: per-L times at the main channel count, then the decision table."""
    cfg = report["config"]
    main_c = str(cfg["main_channels"])
    per_L = report["results"][main_c]
    Ls = sorted(per_L, key=int)
    load = cfg.get("loadavg_start"), cfg.get("loadavg_end")
    lines = [
        f"Run of {cfg['started']} on {cfg['device_name']} ({cfg['device']}, "
        f"threads={cfg['threads']}, {cfg['dtype']}, OMP_WAIT_POLICY={cfg['OMP_WAIT_POLICY']}); "
        f"load average {load[0][0]:.1f} at the start, {load[1][0]:.1f} at the end"
        + (f"; {cfg['machine_note']}" if cfg.get("machine_note") else "")
        + f". Forward time in ms per 1000 edges, {main_c} channels, eager, median of "
        f"{cfg['rounds']} interleaved rounds (edges per L: "
        + ", ".join(str(per_L[L]["edges"]) for L in Ls)
        + "):",
        "",
        "| method | " + " | ".join(f"L={L}" for L in Ls) + " |",
        "|---|" + "---|" * len(Ls),
    ]
    for method in METHODS:
        cells = []
        for L in Ls:
            entry = timed(per_L[L]["methods"][method])
            cells.append(
                f"{entry['forward']['median_s'] / per_L[L]['edges'] * 1e6:.3g}" if entry else "–"
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    cp = [timed(per_L[L]["methods"]["cp_7L2"]) for L in Ls]
    if all(cp):
        cells = [
            f"{e['forward_backward']['median_s'] / per_L[L]['edges'] * 1e6:.3g}"
            for e, L in zip(cp, Ls, strict=True)
        ]
        lines.append("| cp_7L2 forward+backward | " + " | ".join(cells) + " |")
        lines.append(
            "| cp_7L2 forward GFLOP/s / same-run matmul GFLOP/s | "
            + " | ".join(f"{e['forward']['fraction_of_matmul']:.2f}" for e in cp)
            + " |"
        )
    missing = {
        m: per_L[Ls[0]]["methods"][m].get("missing")
        for m in METHODS
        if per_L[Ls[0]]["methods"][m].get("missing")
    }
    if missing:
        lines += ["", "Not timed: " + "; ".join(f"{m}: {why}" for m, why in missing.items()) + "."]
    rows = decision_rows(report)
    lines += [
        "",
        "Decision table (fastest exact method = fastest of "
        + ", ".join(EXACT_METHODS)
        + "; ratio = CP 7L^2 time / fastest exact time, < 1 means CP wins; flop model = CP "
        "forward flops / fewest forward flops of an exact method):",
        "",
        "| L | C | fastest exact, fwd | ms/1k edges | CP 7L^2 | ratio fwd | fastest exact, "
        "fwd+bwd | ratio fwd+bwd | flop model: fewest | flop ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f, fb, fm = r["forward"], r["forward_backward"], r["flop_model"]
        lines.append(
            f"| {r['L']} | {r['channels']} | {f['fastest_exact']} | "
            f"{f['fastest_exact_ms_per_1k_edges']:.3g} | {f['cp_7L2_ms_per_1k_edges']:.3g} | "
            f"{f['cp_over_fastest_exact']:.2f} | {fb['fastest_exact']} | "
            f"{fb['cp_over_fastest_exact']:.2f} | {fm['fewest_flops_exact']} | "
            f"{fm['cp_over_fewest_exact']:.2f} |"
        )
    wins = [
        f"L={r['L']} C={r['channels']} ({phase})"
        for r in rows
        for phase in ("forward", "forward_backward")
        if r[phase]["cp_over_fastest_exact"] < 1
    ]
    lines += [
        "",
        "CP at 7L^2 is faster than the fastest exact method "
        + (f"at: {', '.join(wins)}." if wins else "nowhere in this run."),
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main_c = str(report["config"]["main_channels"])
    results = report["results"][main_c]
    Ls = [int(L) for L in results]
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.8))
    styles = {"eager": "-", "compiled": "--"}
    colors = {m: f"C{i}" for i, m in enumerate(METHODS)}

    def plot_forward(ax, value) -> None:
        """One line per (method, mode): ``value(forward entry, L)`` over the L that have it."""
        for method in METHODS:
            for mode_key, style in styles.items():
                points = [
                    (L, value(entry["forward"], L))
                    for L in Ls
                    if (entry := timed(results[str(L)]["methods"][method], mode_key))
                ]
                if points:
                    ax.plot(
                        *zip(*points, strict=True),
                        style,
                        color=colors[method],
                        marker="o",
                        label=f"{method} ({mode_key})",
                    )

    plot_forward(axes[0], lambda fwd, L: fwd["median_s"] / results[str(L)]["edges"] * 1e6)
    axes[0].set(xscale="log", yscale="log", xlabel="L", ylabel="forward time per edge [µs]")
    axes[0].set_xticks(Ls, [str(L) for L in Ls])
    axes[0].set_title(f"forward, {main_c} channels")
    ratios = report["summary"][main_c]["ratios_e3nn_over_method"]
    for method in METHODS:
        for phase, style in (("forward", "-"), ("forward_backward", ":")):
            r = ratios[f"{method}/eager/{phase}"]
            if r and method != "e3nn_uvu":
                axes[1].plot(
                    [int(L) for L in r],
                    list(r.values()),
                    style,
                    color=colors[method],
                    marker="o",
                    label=f"{method} {phase}",
                )
    axes[1].axhline(1.0, color="grey", lw=0.8)
    axes[1].set(yscale="log", xlabel="L", ylabel="speed-up over e3nn uvu (eager)")
    axes[1].set_title("ratio e3nn time / method time")
    plot_forward(axes[2], lambda fwd, L: fwd["fraction_of_matmul"])
    axes[2].axhline(0.6, color="grey", lw=0.8, ls="--")
    axes[2].set(xlabel="L", ylabel="forward GFLOP/s / same-run matmul GFLOP/s")
    axes[2].set_title("efficiency of the forward")
    for method in METHODS:
        points = [
            (e["forward"]["model_s"] * 1e3, e["forward"]["median_s"] * 1e3)
            for C in report["results"]
            for L in report["results"][C]
            if (e := timed(report["results"][C][L]["methods"][method]))
        ]
        if points:
            axes[3].scatter(*zip(*points, strict=True), color=colors[method], s=14, label=method)
    lo, hi = axes[3].get_xlim()
    axes[3].plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    axes[3].set(
        xscale="log",
        yscale="log",
        xlabel="flop model: flops / matmul rate [ms]",
        ylabel="measured forward [ms]",
    )
    axes[3].set_title("measured vs flop model (every L and C)")
    for ax in axes:
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3, which="both")
    cfg = report["config"]
    fig.suptitle(
        f"TDN layer vs exact products on {cfg['device_name']} ({cfg['threads']} threads, "
        f"{cfg['dtype']}, load {cfg['loadavg_start'][0]:.1f}); edges per L in the JSON",
        fontsize=10,
    )
    fig.tight_layout()
    _io.save_figure_atomic(fig, path, dpi=100)
    plt.close(fig)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def compile_decision(
    method: str, L: int, channels: int, args: argparse.Namespace, spent: float
) -> str | None:
    """None when the method is to be compiled at this (L, C), else the reason it is skipped."""
    if args.no_compile:
        return "--no-compile"
    if method not in args.compile_methods:
        return "not in --compile-methods"
    if channels != args.channels[0]:
        return "compiled at the first --channels value only"
    if method == "e3nn_uvu" and L > args.compile_e3nn_max_L:
        return f"--compile-e3nn-max-L {args.compile_e3nn_max_L}"
    if spent > args.compile_budget_s:
        return f"compile budget of {args.compile_budget_s} s spent"
    return None


def benchmark_case(
    L: int,
    channels: int,
    args: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype,
    sync: Callable[[], None],
    compile_spent: float,
) -> tuple[dict[str, Any], float]:
    """Time every method at (L, C), round-robin, and return its JSON entry.

    After one warm-up call of each variant (its time recorded; for a compiled variant it holds
    the compilation), ``--rounds`` rounds call every variant once (forward, then
    forward+backward) and the same-run matrix multiply once, so that all see the same machine
    load; medians over the rounds are reported.
    """
    d = (L + 1) ** 2
    edge_choice = choose_edges(L, channels, args, dtype)
    edges = edge_choice["edges"]
    torch._dynamo.reset()  # compiled modules of the previous case are not used again
    layers, info, missing = build_layers(L, channels, dtype, device, args.seed)
    variants: dict[tuple[str, str], dict[str, Any]] = {}
    methods: dict[str, Any] = {}
    for method in METHODS:
        rank = info.get(method, {}).get("rank")
        methods[method] = {
            "forward_flops": flops(method, L, edges, channels, rank),
            **info.get(method, {}),
        }
        if method in missing or method not in args.methods:
            methods[method]["missing"] = missing.get(method, "not in --methods")
            continue
        inputs = make_inputs(method, L, edges, channels, dtype, device, seed=args.seed + 7)
        module = layers[method]
        with torch.no_grad():
            grad_out = torch.randn_like(module(*inputs))
        fwd, fwd_bwd = timed_calls(module, inputs, grad_out)
        first = {"forward": run_once(fwd, sync)[0], "forward_backward": run_once(fwd_bwd, sync)[0]}
        variants[(method, "eager")] = {"forward": fwd, "forward_backward": fwd_bwd, "first": first}
        reason = compile_decision(method, L, channels, args, compile_spent)
        if reason is not None:
            methods[method]["compiled"] = {"skipped": reason}
            continue
        t0 = time.perf_counter()
        try:
            compiled = torch.compile(module, dynamic=False)
            cfwd, cfwd_bwd = timed_calls(compiled, inputs, grad_out)
            first = {
                "forward": run_once(cfwd, sync)[0],
                "forward_backward": run_once(cfwd_bwd, sync)[0],
            }
            variants[(method, "compiled")] = {
                "forward": cfwd,
                "forward_backward": cfwd_bwd,
                "first": first,
            }
        except Exception as exc:  # record and go on: compile support varies by setup
            methods[method]["compiled"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        compile_spent += time.perf_counter() - t0
    matmul = matmul_call(device, args.matmul_size)
    run_once(matmul, sync)
    phases = ("forward", "forward_backward")
    samples = {key: {phase: [] for phase in phases} for key in variants}
    faults = {key: {phase: 0 for phase in phases} for key in variants}
    matmul_samples: list[float] = []
    for _ in range(args.rounds):
        matmul_samples.append(run_once(matmul, sync)[0])
        for key, variant in variants.items():
            for phase in phases:
                seconds, page_faults = run_once(variant[phase], sync)
                samples[key][phase].append(seconds)
                faults[key][phase] += page_faults
    mm = sample_stats(matmul_samples)
    mm["size"] = args.matmul_size
    mm["gflops"] = 2 * args.matmul_size**3 / mm["median_s"] / 1e9
    for (method, mode_key), variant in variants.items():
        timing = {phase: sample_stats(samples[(method, mode_key)][phase]) for phase in phases}
        for phase in phases:
            timing[phase]["first_call_s"] = variant["first"][phase]
            timing[phase]["seconds_per_edge"] = timing[phase]["median_s"] / edges
            timing[phase]["minor_faults_per_call"] = faults[(method, mode_key)][phase] / args.rounds
        fwd_stats = timing["forward"]
        fwd_stats["gflops"] = methods[method]["forward_flops"] / fwd_stats["median_s"] / 1e9
        fwd_stats["fraction_of_matmul"] = fwd_stats["gflops"] / mm["gflops"]
        fwd_stats["model_s"] = methods[method]["forward_flops"] / (mm["gflops"] * 1e9)
        fwd_stats["measured_over_model"] = fwd_stats["median_s"] / fwd_stats["model_s"]
        methods[method][mode_key] = timing
    for method in METHODS:
        eager = timed(methods[method])
        if not eager:
            print(f"L={L} C={channels} {method:15s} {methods[method].get('missing')}", flush=True)
            continue
        compiled = methods[method].get("compiled", {})
        line = (
            f"L={L} C={channels} N={edges} {method:15s} "
            f"fwd {eager['forward']['median_s'] * 1e3:9.2f} ms "
            f"({eager['forward']['gflops']:6.1f} GF/s = "
            f"{eager['forward']['fraction_of_matmul']:.2f} matmul)  "
            f"fwd+bwd {eager['forward_backward']['median_s'] * 1e3:9.2f} ms  "
        )
        if "forward" in compiled:
            line += f"compiled fwd {compiled['forward']['median_s'] * 1e3:9.2f} ms"
        print(line, flush=True)
    entry = {
        "d": d,
        "channels": channels,
        "edges": edges,
        "edge_choice": edge_choice,
        "n_paths": len(so3.paths(L)),
        "matmul": mm,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "methods": methods,
    }
    return entry, compile_spent


def page_fault_study(out: Path, repeats: int = 20) -> dict[str, Any]:
    """The sphere layer's L = 4 anomaly: time and minor page faults of the CP forward.

    The setting of experiments/exact_vs_approximate.py (256 samples x 16 channels, float32, one
    thread, no weight) for the sphere factors (rank 3N) and random factors of rank 7 L^2, on the
    plain path (``blocked_bytes = 0``: fresh (256 x 16 x R) temporaries per call) and on the
    blocked path, in this fresh process. Writes ``bench_layer_cpu_page_faults.json``.
    """
    from tdn_theory.cp import sphere_cp

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for L in (3, 4, 5):
        d = (L + 1) ** 2
        x = torch.randn(256, 16, d, generator=gen)
        y = torch.randn(256, d, generator=gen)
        layers = {
            "cp_sphere": CPTensorProduct(*sphere_cp(L).factors, dtype=torch.float32),
            "cp_7L2": CPTensorProduct(*[torch.randn(d, 7 * L * L, generator=gen) for _ in "ABC"]),
        }
        for name, layer in layers.items():
            for path, block_bytes in (("plain", 0), ("blocked", CPTensorProduct.blocked_bytes)):
                layer.blocked_bytes = block_bytes
                with torch.no_grad():
                    layer(x, y)
                    call = lambda m=layer, a=x, b=y: m(a, b)  # noqa: E731
                    samples = [run_once(call, lambda: None) for _ in range(repeats)]
                seconds = sorted(s for s, _ in samples)
                rows.append(
                    {
                        "L": L,
                        "method": name,
                        "rank": layer.rank,
                        "path": path,
                        "intermediate_MB": 256 * 16 * layer.rank * 4 / 1e6,
                        "median_ms": seconds[len(seconds) // 2] * 1e3,
                        "minor_faults_per_call": sum(f for _, f in samples) / repeats,
                    }
                )
                print(rows[-1], flush=True)
    report = {
        "config": {
            "what": page_fault_study.__doc__,
            "threads": 1,
            "repeats": repeats,
            "torch": torch.__version__,
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": _io.machine(),
        },
        "rows": rows,
    }
    _io.write_json_atomic(out, report, indent=1)
    return report


def page_fault_table(report: dict[str, Any]) -> str:
    lines = [
        "| L | layer | rank | (256 x 16 x R) float32 | plain path ms | faults / call | blocked path ms "
        "| faults / call |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = {(r["L"], r["method"], r["path"]): r for r in report["rows"]}
    for L, method in sorted({(r["L"], r["method"]) for r in report["rows"]}):
        plain, blocked = rows[(L, method, "plain")], rows[(L, method, "blocked")]
        lines.append(
            f"| {L} | {method} | {plain['rank']} | {plain['intermediate_MB']:.1f} MB | "
            f"{plain['median_ms']:.2f} | {plain['minor_faults_per_call']:.0f} | "
            f"{blocked['median_ms']:.2f} | {blocked['minor_faults_per_call']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def reconciliation_table(paths: list[Path]) -> str:
    """CP forward fraction of the same-run matmul from the CP-only runs (threads x edges)."""
    lines = []
    for path in sorted(paths):
        report = json.loads(path.read_text())
        cfg, per_L = report["config"], report["results"][str(report["config"]["main_channels"])]
        Ls = sorted(per_L, key=int)
        if not lines:
            lines = [
                "| threads | edges (L = "
                + ", ".join(Ls)
                + ") | "
                + " | ".join(f"L={L}" for L in Ls)
                + " | rounds | load average |",
                "|---|---|" + "---|" * len(Ls) + "---|---|",
            ]
        cp = [per_L[L]["methods"]["cp_7L2"]["eager"]["forward"]["fraction_of_matmul"] for L in Ls]
        lines.append(
            f"| {cfg['threads']} | "
            + ", ".join(str(per_L[L]["edges"]) for L in Ls)
            + " | "
            + " | ".join(f"{v:.2f}" for v in cp)
            + f" | {cfg['rounds']} | {cfg['loadavg_start'][0]:.1f} |"
        )
    return "\n".join(lines) + "\n"


def readme_block(report: dict[str, Any], results: Path) -> str:
    """The generated section "bench_layer" of experiments/README.md (experiments.readme): the run's
    tables, then the CP and fault studies."""
    block = readme_tables(report)
    studies = sorted(results.glob(f"bench_layer_{report['config']['device']}_cp_threads*.json"))
    if studies:
        block += (
            "\nCP at 7L^2 alone (`--methods cp_7L2 --L 3 4 6 --channels 64 --threads T "
            "--edge-scale S`; rounds as in each JSON), forward GFLOP/s / same-run matmul "
            "GFLOP/s:\n\n" + reconciliation_table(studies)
        )
    faults = results / f"bench_layer_{report['config']['device']}_page_faults.json"
    if faults.is_file():
        block += (
            "\nThe CP forward at 256 samples x 16 channels, one thread, plain path (a fresh "
            "(256 x 16 x R) temporary per call) and blocked path (`--page-faults`):\n\n"
            + page_fault_table(json.loads(faults.read_text()))
        )
    return block


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    p.add_argument("--quick", action="store_true", help="L = 1..3, 16 and 64 channels, few edges")
    p.add_argument("--L", type=int, nargs="+", default=None, help="degrees (default 1..6)")
    p.add_argument("--edges", type=int, default=20000, help="edges N (upper limit per L)")
    p.add_argument(
        "--channels", type=int, nargs="+", default=None, help="channel counts (default 64 16 256)"
    )
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument(
        "--memory-gb",
        type=float,
        default=None,
        help="cap on an (N, C, d^2) intermediate (default 1 on CPU, 8 on CUDA)",
    )
    p.add_argument(
        "--edge-schedule",
        choices=["cpu", "full"],
        default=None,
        help="cpu: cap the edges per L by CPU_EDGE_SCHEDULE x 64 / C (default on CPU); "
        "full: --edges for every L, capped by --memory-gb only (default on CUDA)",
    )
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5; quick 2)")
    p.add_argument("--matmul-size", type=int, default=None, help="default 2048 CPU, 8192 CUDA")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile timings")
    p.add_argument(
        "--compile-methods",
        default="cp_7L2,edge_frame,dense_cg",
        help="comma-separated methods to time under torch.compile too (first --channels only)",
    )
    p.add_argument(
        "--compile-e3nn-max-L",
        type=int,
        default=None,
        help="compile e3nn only up to this L (default 1 on CPU: compiling e3nn took 80-360 s "
        "per module for L = 3..6 on the shared 2-core VM; 6 on CUDA)",
    )
    p.add_argument(
        "--compile-budget-s",
        type=float,
        default=240.0,
        help="stop compiling new modules once compiling took this long in total",
    )
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated methods to time (default all; the ratios need e3nn_uvu)",
    )
    p.add_argument(
        "--edge-scale",
        type=float,
        default=None,
        help="multiply the CPU edge schedule (default 1; --quick 0.1)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (writes bench_layer_{device}.json/.png/.md there) or a .json path "
        "(default experiments/results/)",
    )
    p.add_argument("--note", default="", help="a note on the machine, stored in the JSON")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--resummarize",
        action="store_true",
        help="recompute the summary, tables and PNG of an existing JSON without timing",
    )
    p.add_argument(
        "--page-faults",
        action="store_true",
        help="time the CP forward's plain and blocked paths with page faults (the sphere L = 4 "
        "anomaly); writes bench_layer_cpu_page_faults.json next to --out",
    )
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available() and not args.resummarize:
        p.exit(
            2,
            "bench_layer: --device cuda asked for but torch sees no CUDA device; "
            "use --device cpu\n",
        )
    args.L = args.L or (QUICK["L"] if args.quick else [1, 2, 3, 4, 5, 6])
    args.channels = args.channels or (QUICK["channels"] if args.quick else [64, 16, 256])
    if any(L < 1 or L > so3.MAX_L for L in args.L):
        p.exit(2, f"bench_layer: --L values must lie in 1..{so3.MAX_L}\n")
    if args.edges < 1 or min(args.channels) < 1 or args.threads < 1:
        p.exit(2, "bench_layer: --edges, --channels and --threads must be >= 1\n")
    if args.rounds is not None and args.rounds < 1:
        p.exit(2, "bench_layer: --rounds must be >= 1\n")
    cuda = args.device == "cuda"
    args.rounds = args.rounds or (QUICK["rounds"] if args.quick else 5)
    if args.edge_scale is None:
        args.edge_scale = QUICK["edge_scale"] if args.quick else 1.0
    if args.edge_scale <= 0:
        p.exit(2, "bench_layer: --edge-scale must be > 0\n")
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        p.exit(2, f"bench_layer: unknown --methods {unknown}; choose from {METHODS}\n")
    if args.memory_gb is None:
        args.memory_gb = 8.0 if cuda else 1.0
    if args.edge_schedule is None:
        args.edge_schedule = "full" if cuda else "cpu"
    if args.matmul_size is None:
        args.matmul_size = 8192 if cuda else (QUICK["matmul_size"] if args.quick else 2048)
    if args.compile_e3nn_max_L is None:
        args.compile_e3nn_max_L = 6 if cuda else 1
    if args.quick:
        args.no_compile = True
    args.compile_methods = [m for m in args.compile_methods.split(",") if m]
    unknown = sorted(set(args.compile_methods) - set(METHODS))
    if unknown:
        p.exit(2, f"bench_layer: unknown --compile-methods {unknown}; choose from {METHODS}\n")
    out = args.out if args.out is not None else _io.RESULTS
    if out.suffix != ".json":
        out = out / f"bench_layer_{args.device}.json"
    for path in (out, out.with_suffix(".png"), out.with_suffix(".md")):
        if path.exists() and not path.is_file() or path.is_symlink():
            p.exit(
                2, f"bench_layer: {path} exists and is not a regular file; choose another --out\n"
            )
    args.out = out
    return args


def write_outputs(report: dict[str, Any], args: argparse.Namespace) -> None:
    """JSON, decision-table Markdown and (unless --no-plot) the PNG, each written atomically."""
    _io.write_json_atomic(args.out, report, indent=1)
    _io.write_text_atomic(args.out.with_suffix(".md"), readme_tables(report))
    if not args.no_plot:
        plot(report, args.out.with_suffix(".png"))


def load_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
        report["results"][str(report["config"]["main_channels"])]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.exit(
            f"bench_layer: cannot read {path} as a benchmark of this version ({exc!r}); "
            "run the benchmark first"
        )
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.page_faults:
        page_fault_study(args.out.with_name(f"bench_layer_{args.device}_page_faults.json"))
        return {}
    if args.resummarize:
        report = load_report(args.out)
        report["summary"] = {
            C: summarize(per_L, [int(L) for L in per_L]) for C, per_L in report["results"].items()
        }
        report["decision"] = decision_rows(report)
        write_outputs(report, args)
        print(json.dumps(report["summary"][str(report["config"]["main_channels"])]["targets"]))
        return report
    device = torch.device(args.device)
    dtype = torch.float32
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    else:
        torch.backends.cuda.matmul.allow_tf32 = False  # true float32 rates for every method
    sync = synchronizer(device)
    start = time.time()
    compile_spent = 0.0
    try:
        cue_version = __import__("cuequivariance_torch").__version__
    except ImportError:
        cue_version = None
    config = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if argv is None else argv,
        "device": args.device,
        "device_name": device_name(device),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "dtype": str(dtype),
        "channels": args.channels,
        "main_channels": args.channels[0],
        "max_edges": args.edges,
        "memory_gb": args.memory_gb,
        "edge_schedule": args.edge_schedule,
        "edge_scale": args.edge_scale,
        "quick": args.quick,
        "torch": torch.__version__,
        "e3nn": __import__("e3nn").__version__,
        "cuequivariance_torch": cue_version,
        "python": platform.python_version(),
        "seed": args.seed,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "compile_methods": args.compile_methods,
        "methods": args.methods,
        "compile_e3nn_max_L": args.compile_e3nn_max_L,
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "rounds": args.rounds,
        "machine_note": args.note,
        "notes": [
            "CP factors of cp_7L2 and cp_exact are random of the right shape: fit quality does "
            "not change the speed; cp_sphere uses the exact sphere-rule factors.",
            "forward is timed under torch.no_grad(); forward_backward back-propagates a fixed "
            "random output gradient to x, y (edge_vec for edge_frame) and weight.",
            "edge_frame takes the edge vectors and builds its rotations inside the timed call; "
            "the other methods get y = Y(r̂) precomputed (not timed).",
            "e3nn and cuequivariance inputs are prepared in their layout beforehand (not timed).",
            "cuequivariance's output keeps one block per path (the sum over paths with the same "
            "l3 is not done), and its flops are modelled like e3nn's path-by-path product.",
            "Variants are timed round-robin (one call of each per round, the matmul included), "
            "so all see the same machine load; medians over the rounds are reported.",
            "On a shared CPU the timings are noisy: see loadavg and the per-case matmul rates.",
        ],
    }
    results: dict[str, Any] = {str(C): {} for C in args.channels}
    for L in args.L:
        for C in args.channels:
            entry, compile_spent = benchmark_case(L, C, args, device, dtype, sync, compile_spent)
            results[str(C)][str(L)] = entry
    config["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    config["wall_s"] = time.time() - start
    config["compile_s_total"] = compile_spent
    report = {
        "config": config,
        "results": results,
        "summary": {str(C): summarize(results[str(C)], args.L) for C in args.channels},
    }
    report["decision"] = decision_rows(report)
    write_outputs(report, args)
    print(json.dumps(report["summary"][str(args.channels[0])]["targets"], indent=1))
    print(f"wrote {args.out} ({config['wall_s']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
