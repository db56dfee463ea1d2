"""Benchmark the TDN (CP) layer against e3nn's tensor product and the dense CG contraction.

For each L, one process times on the same inputs (edges N x channels C, input 2 with one channel):

- ``e3nn_uvu``: e3nn's TensorProduct, mode "uvu", every path, one weight per channel shared by
  all paths (tdn_theory.nn.e3nn_tensor_product; inputs already in e3nn's layout);
- ``dense_cg``: CGTensorProduct, y contracted with the CG tensor first (2 N d^3 + 2 N C d^2 flops);
- ``dense_cg_outer``: the per-channel dense contraction (x ⊗ y) @ M (2 N C d^3 flops), the cost of
  the dense CG product when input 2 cannot be contracted first;
- ``cp_7L2``: CPTensorProduct at R = 7 L^2 (the paper's rank);
- ``cp_exact``: CPTensorProduct at the smallest exact rank known here: 8 (L=1) and 30 (L=2) from
  Levenberg-Marquardt fits (DESIGN.md 3); for L >= 3 no smaller exact "unit" rank is known, so the
  constructive rank d^2 (Thm 3.2) is used.

The CP layers use random factors of the right shape (seeded): the fit quality does not change the
work or the speed, only the values. Every timing is the median of repeated calls after a warm-up,
for forward (torch.no_grad) and forward+backward (gradients for x, y and weight), eager and under
torch.compile (inductor; compile time and failures recorded). Alongside each L the script times a
large float32 matrix multiply, the machine's practical rate, and reports each forward's GFLOP/s
against it. On CPU the edges are reduced for large L (CPU_EDGE_SCHEDULE: one e3nn
forward+backward call near 1-2 s), everywhere the largest intermediate stays within
``--memory-gb``; the per-L edge counts are recorded and times are also given per edge. The exponent of time versus L is a least-squares fit
of log(time per edge) on log L.

    python -m experiments.bench_layer                 # CPU, writes results/bench_layer_cpu.{json,png}
    python -m experiments.bench_layer --device cuda   # on a CUDA machine
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
    e3nn_path_weights,
    e3nn_tensor_product,
    to_e3nn_layout,
)

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("e3nn_uvu", "dense_cg", "dense_cg_outer", "cp_7L2", "cp_exact")
#: Edges per L on CPU: one e3nn forward+backward call stays near 1-2 s on one core of the
#: 2-core VM (measured there: 5e-5, 2.3e-4, 6.9e-4, 1.5e-3, 4.1e-3, 7.9e-3 s per edge at
#: 64 channels for L = 1..6), which keeps the whole CPU benchmark near 10 minutes.
CPU_EDGE_SCHEDULE = {1: 20000, 2: 6000, 3: 2000, 4: 1000, 5: 400, 6: 250}
#: Smallest exact CP ranks of the "unit", all-path CG tensor found here (DESIGN.md section 3).
KNOWN_EXACT_RANK = {1: 8, 2: 30}


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


def e3nn_flops(L: int, n: int, c: int) -> int:
    """Arithmetic of e3nn's uvu codegen: per (l1, l2) an outer product, per path a contraction."""
    path_list = so3.paths(L)
    pairs = {(l1, l2) for (l1, l2, _) in path_list}
    outer = sum(n * c * (2 * l1 + 1) * (2 * l2 + 1) for (l1, l2) in pairs)
    contract = sum(
        2 * n * c * (2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1) for (l1, l2, l3) in path_list
    )
    return outer + contract


def flops(method: str, L: int, n: int, c: int, rank: int | None) -> int:
    """Forward floating point operations (weight multiplication not counted)."""
    d = (L + 1) ** 2
    if method == "e3nn_uvu":
        return e3nn_flops(L, n, c)
    if method == "dense_cg":
        return 2 * n * d**3 + 2 * n * c * d**2
    if method == "dense_cg_outer":
        return n * c * d * d + 2 * n * c * d**3
    assert rank is not None
    return 2 * n * c * d * rank + 2 * n * d * rank + n * c * rank + 2 * n * c * rank * d


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def run_once(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    """Wall seconds of one call, device work included."""
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


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
    """The timed modules and, for the CP layers, their ranks and the origin of their factors."""
    d = (L + 1) ** 2
    gen = torch.Generator().manual_seed(seed + L)

    def random_cp(rank: int) -> CPTensorProduct:
        factors = [
            torch.randn(d, rank, generator=gen, dtype=torch.float64) / math.sqrt(d) for _ in "ABC"
        ]
        return CPTensorProduct(*factors, dtype=dtype, device=device)

    exact_rank = KNOWN_EXACT_RANK.get(L, d * d)
    layers = {
        "e3nn_uvu": e3nn_tensor_product(L, channels, dtype=dtype).to(device),
        "dense_cg": CGTensorProduct(L, dtype=dtype, device=device),
        "dense_cg_outer": OuterDenseCG(L, dtype).to(device),
        "cp_7L2": random_cp(7 * L * L),
        "cp_exact": random_cp(exact_rank),
    }
    info = {
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
    }
    return layers, info


def make_inputs(method: str, L: int, n: int, channels: int, dtype, device, seed: int):
    """(x, y, weight) for a method: e3nn gets its flat layout and per-path weights."""
    d = (L + 1) ** 2
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, d, generator=gen).to(dtype)
    y = torch.randn(n, d, generator=gen).to(dtype)
    w = torch.randn(n, channels, generator=gen).to(dtype)
    if method == "e3nn_uvu":
        x, w = to_e3nn_layout(x), e3nn_path_weights(w, L)
    return [t.to(device).contiguous() for t in (x, y, w)]


def timed_calls(
    module: Callable[..., torch.Tensor], inputs: list[torch.Tensor], grad_out: torch.Tensor
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(forward, forward_backward) closures of a module on fixed inputs.

    forward runs under torch.no_grad(); forward_backward back-propagates ``grad_out`` to all
    inputs (x, y and weight), as in training with forces.
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


def choose_edges(L: int, args: argparse.Namespace, dtype: torch.dtype) -> dict[str, Any]:
    """Edges for this L: --edges, capped by the CPU schedule (if used) and by memory.

    The memory cap keeps an (N, C, d^2) tensor (e3nn's and the outer product's intermediates)
    within --memory-gb.
    """
    d = (L + 1) ** 2
    itemsize = torch.empty((), dtype=dtype).element_size()
    by_memory = int(args.memory_gb * 2**30 // (args.channels * d * d * itemsize))
    by_schedule = CPU_EDGE_SCHEDULE[L] if args.edge_schedule == "cpu" else args.edges
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


def summarize(results: dict[str, Any], Ls: list[int]) -> dict[str, Any]:
    """Ratios to e3nn, exponents, and the issue's targets evaluated on these numbers."""
    summary: dict[str, Any] = {
        "ratios_e3nn_over_method": {},
        "ratios_e3nn_compiled_over_method": {},
        "exponents": {},
        "targets": {},
        "ratio_definition": "median time of e3nn_uvu EAGER / median time of the method in the "
        "given mode (ratios_e3nn_compiled_over_method: e3nn compiled, where it was compiled)",
    }
    for mode_key in ("eager", "compiled"):
        for phase in ("forward", "forward_backward"):
            for method in METHODS:
                ratios, ratios_c, Lfit, per_edge = {}, {}, [], []
                for L in Ls:
                    methods = results[str(L)]["methods"]
                    entry = methods[method].get(mode_key, {})
                    base = methods["e3nn_uvu"]["eager"]
                    base_c = methods["e3nn_uvu"].get("compiled", {})
                    if phase in entry:
                        ratios[str(L)] = base[phase]["median_s"] / entry[phase]["median_s"]
                        Lfit.append(L)
                        per_edge.append(entry[phase]["median_s"] / results[str(L)]["edges"])
                        if phase in base_c:
                            ratios_c[str(L)] = base_c[phase]["median_s"] / entry[phase]["median_s"]
                key = f"{method}/{mode_key}/{phase}"
                summary["ratios_e3nn_over_method"][key] = ratios
                summary["ratios_e3nn_compiled_over_method"][key] = ratios_c
                summary["exponents"][key] = {
                    "all_L": fit_exponent(Lfit, per_edge),
                    "L>=3": fit_exponent(
                        [L for L in Lfit if L >= 3],
                        [t for L, t in zip(Lfit, per_edge, strict=True) if L >= 3],
                    ),
                }
    targets = summary["targets"]
    for mode_key in ("eager", "compiled"):
        for phase in ("forward", "forward_backward"):
            r_e3nn = summary["ratios_e3nn_over_method"][f"cp_7L2/{mode_key}/{phase}"]
            r_dense = summary["ratios_e3nn_over_method"][f"dense_cg/{mode_key}/{phase}"]
            r_outer = summary["ratios_e3nn_over_method"][f"dense_cg_outer/{mode_key}/{phase}"]
            if not r_e3nn:
                continue
            targets[f"{mode_key}/{phase}"] = {
                "cp_faster_than_e3nn_every_L": all_or_none([v > 1 for v in r_e3nn.values()]),
                "cp_10x_e3nn_L>=3": all_or_none(
                    [v >= 10 for L, v in r_e3nn.items() if int(L) >= 3]
                ),
                "cp_faster_than_dense_cg_L>=3": all_or_none(
                    [r_e3nn[L] > r_dense[L] for L in r_e3nn if int(L) >= 3 and L in r_dense]
                ),
                "cp_faster_than_dense_cg_outer_L>=3": all_or_none(
                    [r_e3nn[L] > r_outer[L] for L in r_e3nn if int(L) >= 3 and L in r_outer]
                ),
            }
    best_matmul = max(results[str(L)]["matmul"]["gflops"] for L in Ls)
    summary["best_matmul_gflops"] = best_matmul
    for mode_key in ("eager", "compiled"):
        same_round, best = {}, {}
        for L in Ls:
            entry = results[str(L)]["methods"]["cp_7L2"].get(mode_key, {})
            if "forward" in entry:
                same_round[str(L)] = entry["forward"]["fraction_of_matmul"]
                best[str(L)] = entry["forward"]["gflops"] / best_matmul
        targets[f"cp_forward_fraction_of_same_round_matmul_{mode_key}"] = same_round
        targets[f"cp_forward_fraction_of_best_matmul_{mode_key}"] = best
        targets[f"cp_forward_30pct_of_same_round_matmul_L>=3_{mode_key}"] = all_or_none(
            [v >= 0.3 for L, v in same_round.items() if int(L) >= 3]
        )
        targets[f"cp_forward_30pct_of_best_matmul_L>=3_{mode_key}"] = all_or_none(
            [v >= 0.3 for L, v in best.items() if int(L) >= 3]
        )
    return summary


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Ls = [int(L) for L in report["results"]]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    styles = {"eager": "-", "compiled": "--"}
    colors = {m: f"C{i}" for i, m in enumerate(METHODS)}

    def plot_forward(ax, value) -> None:
        """One line per (method, mode): ``value(forward entry, L)`` over the L that have it."""
        for method in METHODS:
            for mode_key, style in styles.items():
                points = [
                    (L, value(entry["forward"], L))
                    for L in Ls
                    if "forward"
                    in (entry := report["results"][str(L)]["methods"][method].get(mode_key, {}))
                ]
                if points:
                    ax.plot(*zip(*points, strict=True), style, color=colors[method], marker="o",
                            label=f"{method} ({mode_key})")  # fmt: skip

    plot_forward(axes[0], lambda fwd, L: fwd["median_s"] / report["results"][str(L)]["edges"] * 1e6)
    axes[0].set(xscale="log", yscale="log", xlabel="L", ylabel="forward time per edge [µs]")
    axes[0].set_xticks(Ls, [str(L) for L in Ls])
    axes[0].set_title(f"forward, {report['config']['channels']} channels")
    for method in ("cp_7L2", "cp_exact", "dense_cg", "dense_cg_outer"):
        for phase, style in (("forward", "-"), ("forward_backward", ":")):
            ratios = report["summary"]["ratios_e3nn_over_method"][f"{method}/eager/{phase}"]
            if ratios:
                axes[1].plot(
                    [int(L) for L in ratios],
                    list(ratios.values()),
                    style,
                    color=colors[method],
                    marker="o",
                    label=f"{method} {phase}",
                )
    axes[1].axhline(1.0, color="grey", lw=0.8)
    axes[1].set(yscale="log", xlabel="L", ylabel="speed-up over e3nn uvu (eager)")
    axes[1].set_title("ratio e3nn time / method time")
    plot_forward(axes[2], lambda fwd, L: fwd["fraction_of_matmul"])
    axes[2].axhline(0.3, color="grey", lw=0.8, ls="--")
    axes[2].set(xlabel="L", ylabel="forward GFLOP/s / same-run matmul GFLOP/s")
    axes[2].set_title("efficiency of the forward")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    cfg = report["config"]
    fig.suptitle(
        f"TDN layer vs e3nn on {cfg['device_name']} ({cfg['threads']} threads, {cfg['dtype']}); "
        "edges per L in the JSON",
        fontsize=10,
    )
    fig.tight_layout()
    _io.save_figure_atomic(fig, path, dpi=110)
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


def compile_decision(method: str, L: int, args: argparse.Namespace, spent: float) -> str | None:
    """None when the method is to be compiled at this L, else the reason it is skipped."""
    if args.no_compile:
        return "--no-compile"
    if method not in args.compile_methods:
        return "not in --compile-methods"
    if method == "e3nn_uvu" and L > args.compile_e3nn_max_L:
        return f"--compile-e3nn-max-L {args.compile_e3nn_max_L}"
    if spent > args.compile_budget_s:
        return f"compile budget of {args.compile_budget_s} s spent"
    return None


def benchmark_degree(
    L: int,
    args: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype,
    sync: Callable[[], None],
    compile_spent: float,
) -> tuple[dict[str, Any], float]:
    """Time every method at degree L, round-robin, and return its JSON entry.

    After one warm-up call of each variant (its time recorded; for a compiled variant it holds
    the compilation), ``--rounds`` rounds call every variant once (forward, then
    forward+backward) and the same-run matrix multiply once, so that all see the same machine
    load; medians over the rounds are reported.
    """
    d = (L + 1) ** 2
    edge_choice = choose_edges(L, args, dtype)
    edges = edge_choice["edges"]
    torch._dynamo.reset()  # compiled modules of the previous L are not used again
    layers, cp_info = build_layers(L, args.channels, dtype, device, args.seed)
    variants: dict[tuple[str, str], dict[str, Any]] = {}
    methods: dict[str, Any] = {}
    for method in METHODS:
        inputs = make_inputs(method, L, edges, args.channels, dtype, device, seed=args.seed + 7)
        module = layers[method]
        rank = cp_info.get(method, {}).get("rank")
        methods[method] = {
            "forward_flops": flops(method, L, edges, args.channels, rank),
            **cp_info.get(method, {}),
        }
        with torch.no_grad():
            grad_out = torch.randn_like(module(*inputs))
        fwd, fwd_bwd = timed_calls(module, inputs, grad_out)
        first = {"forward": run_once(fwd, sync), "forward_backward": run_once(fwd_bwd, sync)}
        variants[(method, "eager")] = {"forward": fwd, "forward_backward": fwd_bwd, "first": first}
        reason = compile_decision(method, L, args, compile_spent)
        if reason is not None:
            methods[method]["compiled"] = {"skipped": reason}
            continue
        t0 = time.perf_counter()
        try:
            compiled = torch.compile(module, dynamic=False)
            cfwd, cfwd_bwd = timed_calls(compiled, inputs, grad_out)
            first = {"forward": run_once(cfwd, sync), "forward_backward": run_once(cfwd_bwd, sync)}
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
    matmul_samples: list[float] = []
    for _ in range(args.rounds):
        matmul_samples.append(run_once(matmul, sync))
        for key, variant in variants.items():
            for phase in phases:
                samples[key][phase].append(run_once(variant[phase], sync))
    mm = sample_stats(matmul_samples)
    mm["size"] = args.matmul_size
    mm["gflops"] = 2 * args.matmul_size**3 / mm["median_s"] / 1e9
    for (method, mode_key), variant in variants.items():
        timing = {phase: sample_stats(samples[(method, mode_key)][phase]) for phase in phases}
        for phase in phases:
            timing[phase]["first_call_s"] = variant["first"][phase]
            timing[phase]["seconds_per_edge"] = timing[phase]["median_s"] / edges
        fwd_stats = timing["forward"]
        fwd_stats["gflops"] = methods[method]["forward_flops"] / fwd_stats["median_s"] / 1e9
        fwd_stats["fraction_of_matmul"] = fwd_stats["gflops"] / mm["gflops"]
        methods[method][mode_key] = timing
    for method in METHODS:
        eager, compiled = methods[method]["eager"], methods[method]["compiled"]
        line = (
            f"L={L} N={edges} {method:15s} fwd {eager['forward']['median_s'] * 1e3:9.2f} ms "
            f"({eager['forward']['gflops']:6.1f} GF/s = "
            f"{eager['forward']['fraction_of_matmul']:.2f} matmul)  "
            f"fwd+bwd {eager['forward_backward']['median_s'] * 1e3:9.2f} ms  "
        )
        if "forward" in compiled:
            line += (
                f"compiled fwd {compiled['forward']['median_s'] * 1e3:9.2f} ms "
                f"fwd+bwd {compiled['forward_backward']['median_s'] * 1e3:9.2f} ms"
            )
        else:
            line += f"compiled: {next(iter(compiled.values()))}"
        print(line, flush=True)
    entry = {
        "d": d,
        "edges": edges,
        "edge_choice": edge_choice,
        "n_paths": len(so3.paths(L)),
        "matmul": mm,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "methods": methods,
    }
    return entry, compile_spent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    p.add_argument("--L", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    p.add_argument("--edges", type=int, default=20000, help="edges N (upper limit per L)")
    p.add_argument("--channels", type=int, default=64)
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
        help="cpu: cap the edges per L by CPU_EDGE_SCHEDULE (default on CPU); "
        "full: --edges for every L, capped by --memory-gb only (default on CUDA)",
    )
    p.add_argument("--rounds", type=int, default=7, help="timed rounds after the warm-up")
    p.add_argument("--matmul-size", type=int, default=None, help="default 2048 CPU, 8192 CUDA")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile timings")
    p.add_argument(
        "--compile-methods",
        default="e3nn_uvu,dense_cg,cp_7L2",
        help="comma-separated methods to time under torch.compile too",
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
        default=360.0,
        help="stop compiling new modules once compiling took this long in total",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON path (default experiments/results/bench_layer_{device}.json)",
    )
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--resummarize",
        action="store_true",
        help="recompute the summary and the PNG of an existing --out JSON without timing",
    )
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.exit(
            2,
            "bench_layer: --device cuda asked for but torch sees no CUDA device; "
            "use --device cpu\n",
        )
    if any(L < 1 or L > so3.MAX_L for L in args.L):
        p.exit(2, f"bench_layer: --L values must lie in 1..{so3.MAX_L}\n")
    if args.edges < 1 or args.channels < 1 or args.threads < 1:
        p.exit(2, "bench_layer: --edges, --channels and --threads must be >= 1\n")
    cuda = args.device == "cuda"
    if args.memory_gb is None:
        args.memory_gb = 8.0 if cuda else 1.0
    if args.edge_schedule is None:
        args.edge_schedule = "full" if cuda else "cpu"
    if args.matmul_size is None:
        args.matmul_size = 8192 if cuda else 2048
    if args.compile_e3nn_max_L is None:
        args.compile_e3nn_max_L = 6 if cuda else 1
    args.compile_methods = [m for m in args.compile_methods.split(",") if m]
    unknown = sorted(set(args.compile_methods) - set(METHODS))
    if unknown:
        p.exit(2, f"bench_layer: unknown --compile-methods {unknown}; choose from {METHODS}\n")
    if args.out is None:
        args.out = RESULTS / f"bench_layer_{args.device}.json"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.resummarize:
        try:
            report = json.loads(args.out.read_text())
        except (OSError, ValueError) as exc:
            sys.exit(f"bench_layer: cannot read {args.out} ({exc}); run the benchmark first")
        Ls = [int(L) for L in report["results"]]
        report["summary"] = summarize(report["results"], Ls)
        _io.write_json_atomic(args.out, report, indent=1)
        if not args.no_plot:
            plot(report, args.out.with_suffix(".png"))
        print(json.dumps(report["summary"]["targets"], indent=1))
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
    config = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if argv is None else argv,
        "device": args.device,
        "device_name": device_name(device),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "dtype": str(dtype),
        "channels": args.channels,
        "max_edges": args.edges,
        "memory_gb": args.memory_gb,
        "edge_schedule": args.edge_schedule,
        "torch": torch.__version__,
        "e3nn": __import__("e3nn").__version__,
        "python": platform.python_version(),
        "seed": args.seed,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "compile_methods": args.compile_methods,
        "compile_e3nn_max_L": args.compile_e3nn_max_L,
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "rounds": args.rounds,
        "notes": [
            "CP factors are random of the right shape: fit quality does not change the speed.",
            "forward is timed under torch.no_grad(); forward_backward back-propagates a fixed "
            "random output gradient to x, y and weight.",
            "e3nn inputs are prepared in e3nn's layout beforehand (conversion not timed).",
            "Variants are timed round-robin (one call of each per round, the matmul included), "
            "so all see the same machine load; medians over the rounds are reported.",
            "On a shared CPU the timings are noisy: see loadavg and the per-L matmul rates.",
        ],
    }
    results: dict[str, Any] = {}
    for L in args.L:
        entry, compile_spent = benchmark_degree(L, args, device, dtype, sync, compile_spent)
        results[str(L)] = entry
    config["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    config["wall_s"] = time.time() - start
    config["compile_s_total"] = compile_spent
    report = {"config": config, "results": results, "summary": summarize(results, args.L)}
    _io.write_json_atomic(args.out, report, indent=1)
    if not args.no_plot:
        plot(report, args.out.with_suffix(".png"))
    print(json.dumps(report["summary"]["targets"], indent=1))
    print(f"wrote {args.out} ({config['wall_s']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
