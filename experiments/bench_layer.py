"""Benchmark the TDN (CP) layer against every exact alternative, in both layer forms, interleaved.

For each layer form, L and channel count C, one process times on the same inputs (N edges x C
channels):

* form ``shared``: input 2 is one vector per edge shared by the channels, the spherical harmonics
  y = Y(r̂) of the edge direction (message passing with one weight per channel);
* form ``per_channel``: input 2 carries the channels, y of shape (N, C, d), a different vector per
  channel (the TDN paper's shared-weight layer z_u = M(x_u, (W y)_u), per-channel, per-degree
  weights on Y): no y-first contraction exists.

Methods (``METHODS``; the exact ones in ``EXACT_METHODS``):

- ``edge_frame`` (shared only): EdgeFrameTensorProduct, the exact product with y = Y(r̂) in the
  edge frame (rotate into the frame of r̂, sparse m-block contraction, rotate back: O(C L^3) per
  edge plus O(L^4) for the Wigner blocks). It takes the edge vectors; every other method takes y
  precomputed (not timed);
- ``dense_cg``: CGTensorProduct; shared: y contracted with the CG tensor first (2 N d^3 +
  2 N C d^2 flops); per channel: x ⊗ y then one GEMM with M as a (d^2 x d) matrix
  (N C d^2 + 2 N C d^3);
- ``dense_cg_outer`` (shared only): the per-channel contraction (x ⊗ y) @ M with the shared y
  (what the dense product costs without the y-first order);
- ``dense_cg_sparse`` (per channel only): CGTensorProduct(form="sparse"), x ⊗ y then a sparse
  (CSR) product over the nnz(M) non-zeros (N C d^2 + 2 N C nnz(M));
- ``cp_7L2``: CPTensorProduct at R = 7 L^2 (the paper's rank; approximate);
- ``cp_exact``: CPTensorProduct at the smallest exact rank known here: 8 (L=1) and 30 (L=2) from
  Levenberg-Marquardt fits (the rank atlas, proofs/rank_bounds.md); for L >= 3 the constructive
  rank d^2 (Thm 3.2);
- ``cp_sphere``: CPTensorProduct with the exact sphere-rule factors (rank 3N) of the "sphere"
  normalization (an exactly equivariant product with other path weights than "unit");
- ``e3nn``: e3nn's TensorProduct over every path, one weight per channel shared by all paths,
  mode "uvu" (shared) or "uuu" (per channel); inputs already in e3nn's layout;
- ``cuequivariance`` (shared only): cuequivariance_torch.ChannelWiseTensorProduct over the same
  paths, method "naive" on CPU and the library default on CUDA; its output keeps one block per
  path. Optional: ``pip install 'tdn_theory[cuequivariance]'``; recorded as "not installed"
  without it.

Timing (torch.utils.benchmark): every variant (method x forward / forward+backward) gets one
``Timer.blocked_autorange`` per round, and ``--rounds`` (default 11) rounds call every variant of
the (form, L, C) cell in turn, the same-run float32 matmul included, so all see the same machine
load. Per variant the JSON holds the median over the rounds and the spread (the interquartile
range of the round medians); a CP time whose interquartile interval overlaps the fastest exact
method's is a tie. The merged measurements are also printed with ``torch.utils.benchmark.Compare``.
The number of edges is fixed per channel count, the same for every L: N = ``--edge-channels`` / C
(default 8192: 512, 128, 32 edges at C = 16, 64, 256), so that per-edge times and their exponents
in L are not confounded by edge counts that change with L, and one e3nn forward+backward at L = 6
stays near a second on one core.

The CP layers ``cp_7L2`` and ``cp_exact`` use random factors of the right shape (seeded): the fit
quality does not change the work. The flop model of each cell sets the CP forward flops beside
the fewest forward flops of an exact form, counting nnz(M) for the dense contraction (a sparse
y-first or per-channel contraction), the edge frame (shared form) and e3nn's path-by-path count.

``--model`` (on by default; ``--no-model`` skips it) times the whole potential at one L (default
2, 16 channels, 2 layers, float64, ``--model-configs`` Cu-Au EMT configurations): a training step
(energy, forces with create_graph, a loss on both, backward) and inference (energy and forces),
for dense, CP at 7L^2 (the shipped fit with the layer's default backward, and
``cp_7L2_function`` with its gradients through the CP Function and its explicit second
derivative), CP exact (the rank-30 factor file at L = 2), sphere and e3nn, in both layer forms,
interleaved the same way.

    python -m experiments.bench_layer                     # CPU -> results/bench_layer_cpu.{json,png,md}
    python -m experiments.bench_layer --quick --out DIR   # a minute or two
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
from torch.utils import benchmark

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
FORMS = ("shared", "per_channel")
METHODS = (
    "edge_frame",
    "dense_cg",
    "dense_cg_outer",
    "dense_cg_sparse",
    "cp_7L2",
    "cp_exact",
    "cp_sphere",
    "e3nn",
    "cuequivariance",
)
#: The methods of each layer form.
FORM_METHODS = {
    "shared": (
        "edge_frame",
        "dense_cg",
        "dense_cg_outer",
        "cp_7L2",
        "cp_exact",
        "cp_sphere",
        "e3nn",
        "cuequivariance",
    ),
    "per_channel": ("dense_cg", "dense_cg_sparse", "cp_7L2", "cp_exact", "cp_sphere", "e3nn"),
}
#: Methods that compute the exact "unit" CG product (cp_exact: the shape of an exact CP).
EXACT_METHODS = (
    "edge_frame",
    "dense_cg",
    "dense_cg_outer",
    "dense_cg_sparse",
    "cp_exact",
    "e3nn",
    "cuequivariance",
)
#: Smallest exact CP ranks of the "unit", all-path CG tensor found here (the rank atlas, proofs/rank_bounds.md).
KNOWN_EXACT_RANK = {1: 8, 2: 30}
QUICK = {
    "L": [1, 2, 3],
    "channels": [16, 64],
    "edge_channels": 1024,
    "rounds": 3,
    "matmul_size": 512,
    "min_run_time": 0.01,
}
#: Exact factor files for the model benchmark's cp_exact (L -> file under experiments/results).
EXACT_FACTOR_FILES = {L: f"factors/exact_unit_all_L{L}.npz" for L in (1, 2, 3, 4)}


class OuterDenseCG(torch.nn.Module):
    """out[n, c, k] = w[n, c] * sum_{ij} M[k, i, j] x[n, c, i] y[n, j] via the outer product.

    Builds x ⊗ y per channel, shape (N, C, d*d), and multiplies by M as a (d*d, d) matrix: the
    dense product with a shared y when the y-first order is not used.
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


def cp_flops(L: int, n: int, c: int, rank: int, per_channel: bool = False) -> int:
    """CPTensorProduct.flops: x @ B, y @ C (per sample or per channel), product, @ Aᵀ."""
    d = (L + 1) ** 2
    y_rows = n * c if per_channel else n
    return 2 * n * c * d * rank + 2 * y_rows * d * rank + n * c * rank + 2 * n * c * rank * d


def nnz(L: int) -> int:
    """Non-zero entries of the "unit", all-path CG tensor of degree L."""
    return int(np.count_nonzero(so3.cg_tensor(L)))


def flops(method: str, form: str, L: int, n: int, c: int, rank: int | None) -> int:
    """Forward floating point operations of a method as implemented (weight not counted)."""
    d = (L + 1) ** 2
    per_channel = form == "per_channel"
    if method in ("e3nn", "cuequivariance"):
        return e3nn_flops(L, n, c)
    if method == "dense_cg":
        if per_channel:
            return n * c * d * d + 2 * n * c * d**3
        return 2 * n * d**3 + 2 * n * c * d**2
    if method == "dense_cg_outer":
        return n * c * d * d + 2 * n * c * d**3
    if method == "dense_cg_sparse":
        return n * c * d * d + 2 * n * c * nnz(L)
    if method == "edge_frame":
        return EdgeFrameTensorProduct(L).flops(n, c)
    assert rank is not None
    return cp_flops(L, n, c, rank, per_channel)


def exact_flop_model(form: str, L: int, n: int, c: int) -> dict[str, int]:
    """Forward flops of the exact forms, counting nnz(M) for the dense contractions.

    Shared: the y-first contraction done sparsely (2 N nnz + 2 N C d^2), the edge frame, e3nn's
    path-by-path count. Per channel: x ⊗ y and a sparse contraction (N C d^2 + 2 N C nnz),
    e3nn's count.
    """
    d = (L + 1) ** 2
    model = {"e3nn": e3nn_flops(L, n, c)}
    if form == "shared":
        model["dense_cg (nnz)"] = 2 * n * nnz(L) + 2 * n * c * d * d
        model["edge_frame"] = EdgeFrameTensorProduct(L).flops(n, c)
    else:
        model["dense_cg (nnz)"] = n * c * d * d + 2 * n * c * nnz(L)
    return model


def matmul_call(device: torch.device, size: int) -> Callable[[], Any]:
    """A float32 (size x size) @ (size x size) product: the practical peak rate."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device)
    b = torch.randn(size, size, generator=gen).to(device)
    return lambda: torch.mm(a, b)


def build_layers(
    form: str, L: int, channels: int, dtype: torch.dtype, device: torch.device, seed: int
):
    """The timed modules of a form, per-method information, and the reason for any missing one."""
    from tdn_theory.cp import sphere_cp

    d = (L + 1) ** 2
    gen = torch.Generator().manual_seed(seed + L)
    per_channel = form == "per_channel"

    def random_cp(rank: int) -> CPTensorProduct:
        factors = [
            torch.randn(d, rank, generator=gen, dtype=torch.float64) / math.sqrt(d) for _ in "ABC"
        ]
        return CPTensorProduct(*factors, dtype=dtype, device=device)

    exact_rank = KNOWN_EXACT_RANK.get(L, d * d)
    sphere = sphere_cp(L)
    layers: dict[str, Any] = {
        "dense_cg": CGTensorProduct(L, dtype=dtype, device=device),
        "cp_7L2": random_cp(7 * L * L),
        "cp_exact": random_cp(exact_rank),
        "cp_sphere": CPTensorProduct(*sphere.factors, dtype=dtype, device=device),
        "e3nn": e3nn_tensor_product(L, channels, dtype=dtype, per_channel_y=per_channel).to(device),
    }
    if per_channel:
        layers["dense_cg_sparse"] = CGTensorProduct(L, dtype=dtype, device=device, form="sparse")
    else:
        layers["edge_frame"] = EdgeFrameTensorProduct(L, dtype=dtype, device=device)
        layers["dense_cg_outer"] = OuterDenseCG(L, dtype).to(device)
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
        "e3nn": {"mode": "uuu" if per_channel else "uvu"},
    }
    if not per_channel:
        info["edge_frame"] = {"blocks": layers["edge_frame"].block_sizes}
    missing = {}
    if not per_channel:
        cue_layer, cue_note = cuequivariance_layer(L, channels, dtype, device)
        info["cuequivariance"] = {"method": cue_note}
        if cue_layer is None:
            missing["cuequivariance"] = cue_note
        else:
            layers["cuequivariance"] = cue_layer
    return layers, info, missing


def so3_harmonics(L: int, edge_vec: torch.Tensor) -> torch.Tensor:
    """Component-normalised spherical harmonics of the edges (e3nn's, the package's basis)."""
    from e3nn import o3

    return o3.spherical_harmonics(
        list(range(L + 1)), edge_vec, normalize=True, normalization="component"
    )


def make_inputs(method: str, form: str, L: int, n: int, channels: int, dtype, device, seed: int):
    """The arguments of a method: (x, y or edge_vec, weight) in that method's layout.

    Shared: y = Y(r̂) of random edge vectors. Per channel: y[n, c] = a random per-channel,
    per-degree weight times Y(r̂_n) (the paper's (W y)_u).
    """
    d = (L + 1) ** 2
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, d, generator=gen, dtype=torch.float64)
    edge_vec = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    w = torch.randn(n, channels, generator=gen, dtype=torch.float64)
    y = so3_harmonics(L, edge_vec)
    if form == "per_channel":
        per_degree = torch.randn(n, channels, L + 1, generator=gen, dtype=torch.float64)
        y = per_degree[:, :, so3.degree_of_index(L)] * y[:, None, :]
    if method == "edge_frame":
        args = [x, edge_vec, w]
    elif method in ("e3nn", "cuequivariance"):
        y_in = to_e3nn_layout(y) if form == "per_channel" else y
        args = [to_e3nn_layout(x), y_in, e3nn_path_weights(w, L)]
    else:
        args = [x, y, w]
    return [t.to(dtype=dtype, device=device).contiguous() for t in args]


def timed_calls(
    module: Callable[..., torch.Tensor], inputs: list[torch.Tensor], grad_out: torch.Tensor
) -> dict[str, Callable[[], None]]:
    """Forward and forward_backward closures of a module on fixed inputs.

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

    return {"forward": forward, "forward_backward": forward_backward}


def edges_for(channels: int, args: argparse.Namespace) -> int:
    """Edges of every (L, C) cell: --edge-channels / C (at least 1), the same for every L."""
    return max(1, args.edge_channels // channels)


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


def round_stats(medians: list[float]) -> dict[str, Any]:
    """Median over the rounds of the per-round medians, their quartiles, min, max, spread."""
    q1, med, q3 = np.percentile(medians, [25, 50, 75])
    return {
        "median_s": float(med),
        "iqr_s": [float(q1), float(q3)],
        "min_s": float(min(medians)),
        "max_s": float(max(medians)),
        "relative_spread": float((q3 - q1) / med) if med > 0 else None,
        "rounds": len(medians),
        "round_medians_s": [float(v) for v in medians],
    }


def is_tie(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when the interquartile intervals of two round-median samples overlap."""
    return a["iqr_s"][0] <= b["iqr_s"][1] and b["iqr_s"][0] <= a["iqr_s"][1]


def make_timer(fn: Callable[[], None], label: str, sub_label: str, description: str, threads):
    """A torch.utils.benchmark Timer of ``fn()`` (it synchronizes CUDA itself)."""
    return benchmark.Timer(
        stmt="fn()",
        globals={"fn": fn},
        label=label,
        sub_label=sub_label,
        description=description,
        num_threads=threads,
    )


def run_rounds(
    timers: dict[Any, benchmark.Timer], rounds: int, min_run_time: float
) -> tuple[dict[Any, list[float]], dict[Any, list[benchmark.Measurement]]]:
    """``rounds`` rounds; in each every timer runs one blocked_autorange, in turn.

    Returns per key the per-round medians and the Measurements (for Compare).
    """
    medians: dict[Any, list[float]] = {key: [] for key in timers}
    measurements: dict[Any, list[benchmark.Measurement]] = {key: [] for key in timers}
    for _ in range(rounds):
        for key, timer in timers.items():
            m = timer.blocked_autorange(min_run_time=min_run_time)
            medians[key].append(m.median)
            measurements[key].append(m)
    return medians, measurements


def compare_text(measurements: list[benchmark.Measurement]) -> str:
    """torch.utils.benchmark.Compare of the merged measurements, as text."""
    merged = benchmark.Measurement.merge(measurements)
    compare = benchmark.Compare(merged)
    compare.trim_significant_figures()
    return str(compare)


def compile_decision(
    method: str, channels: int, args: argparse.Namespace, spent: float
) -> str | None:
    """None when the method is to be compiled in this cell, else the reason it is skipped."""
    if args.no_compile:
        return "--no-compile"
    if method not in args.compile_methods:
        return "not in --compile-methods"
    if channels != args.channels[0]:
        return "compiled at the first --channels value only"
    if spent > args.compile_budget_s:
        return f"compile budget of {args.compile_budget_s} s spent"
    return None


def benchmark_case(
    form: str,
    L: int,
    channels: int,
    args: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype,
    compile_spent: float,
) -> tuple[dict[str, Any], float]:
    """Time every method of a form at (L, C), interleaved, and return its JSON entry.

    After one warm-up call of each variant (its time recorded; for a compiled variant it holds
    the compilation), ``--rounds`` rounds run one ``blocked_autorange`` of every variant and of
    the same-run matrix multiply in turn (see the module docstring).
    """
    d = (L + 1) ** 2
    edges = edges_for(channels, args)
    threads = torch.get_num_threads()
    torch._dynamo.reset()  # compiled modules of the previous case are not used again
    layers, info, missing = build_layers(form, L, channels, dtype, device, args.seed)
    label = f"{form} L={L} C={channels} N={edges}"
    timers: dict[tuple[str, str, str], benchmark.Timer] = {}
    first_call: dict[tuple[str, str, str], float] = {}
    methods: dict[str, Any] = {}
    gen = torch.Generator().manual_seed(args.seed + 11)
    for method in FORM_METHODS[form]:
        rank = info.get(method, {}).get("rank")
        methods[method] = {
            "forward_flops": flops(method, form, L, edges, channels, rank),
            **info.get(method, {}),
        }
        if method in missing or method not in args.methods:
            methods[method]["missing"] = missing.get(method, "not in --methods")
            continue
        inputs = make_inputs(method, form, L, edges, channels, dtype, device, seed=args.seed + 7)
        module = layers[method]
        with torch.no_grad():
            shape = module(*inputs).shape
        grad_out = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype=dtype)
        variants = {"eager": module}
        reason = compile_decision(method, channels, args, compile_spent)
        if reason is None:
            variants["compiled"] = torch.compile(module, dynamic=False)
        else:
            methods[method]["compiled"] = {"skipped": reason}
        for mode_key, callable_ in variants.items():
            t0 = time.perf_counter()
            try:
                calls = timed_calls(callable_, inputs, grad_out.to(device))
                for phase, fn in calls.items():
                    start = time.perf_counter()
                    fn()
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    first_call[(method, mode_key, phase)] = time.perf_counter() - start
                    timers[(method, mode_key, phase)] = make_timer(
                        fn, label, f"{method} ({mode_key})", phase, threads
                    )
            except Exception as exc:  # record and go on: compile support varies by setup
                if mode_key == "eager":
                    raise
                methods[method]["compiled"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            if mode_key == "compiled":
                compile_spent += time.perf_counter() - t0
    matmul = matmul_call(device, args.matmul_size)
    matmul()
    timers[("matmul", "eager", "forward")] = make_timer(
        matmul, label, "matmul (float32)", "forward", threads
    )
    medians, measurements = run_rounds(timers, args.rounds, args.min_run_time)
    mm = round_stats(medians.pop(("matmul", "eager", "forward")))
    mm["size"] = args.matmul_size
    mm["gflops"] = 2 * args.matmul_size**3 / mm["median_s"] / 1e9
    for (method, mode_key, phase), samples in medians.items():
        stats = round_stats(samples)
        stats["first_call_s"] = first_call[(method, mode_key, phase)]
        stats["seconds_per_edge"] = stats["median_s"] / edges
        methods[method].setdefault(mode_key, {})[phase] = stats
    for entry in methods.values():
        for mode_key in ("eager", "compiled"):
            fwd = timed(entry, mode_key).get("forward")
            if fwd is None:
                continue
            fwd["gflops"] = entry["forward_flops"] / fwd["median_s"] / 1e9
            fwd["fraction_of_matmul"] = fwd["gflops"] / mm["gflops"]
            fwd["model_s"] = entry["forward_flops"] / (mm["gflops"] * 1e9)
            fwd["measured_over_model"] = fwd["median_s"] / fwd["model_s"]
    compare = compare_text([m for ms in measurements.values() for m in ms])
    print(compare, flush=True)
    entry = {
        "form": form,
        "d": d,
        "channels": channels,
        "edges": edges,
        "n_paths": len(so3.paths(L)),
        "nnz": nnz(L),
        "matmul": mm,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "flop_model_exact": exact_flop_model(form, L, edges, channels),
        "methods": methods,
        "compare": compare,
    }
    return entry, compile_spent


def model_benchmark(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Training step and inference of the whole potential per backend, both layer forms.

    Settings of experiments/accuracy_vs_rank.py's speed table (16 channels, 2 layers, cutoff
    4.5 Å, float64, ``--model-configs`` (default 8) Cu-Au EMT configurations in one batch). Interleaved rounds of one
    ``blocked_autorange`` per (form, backend, phase); ratios to dense in the same form.
    """
    from tdn_theory.models import TDNPotential, data
    from tdn_theory.models.train import collate, predict

    L, C = args.model_L, args.model_channels
    configs = data.load_dataset("cuau-fcc", n_configs=8, seed=0)[: args.model_configs]
    species = data.species_of(configs)
    exact_file = _io.RESULTS / EXACT_FACTOR_FILES.get(L, "none")
    models: dict[tuple[str, str], Any] = {}
    for form in FORMS:
        base = TDNPotential(
            species, L, C, 2, 4.5, seed=args.seed, edge_input=form, dtype=torch.float64
        ).to(device)
        models[(form, "dense")] = base
        models[(form, "cp_7L2")] = base.with_backend("cp", rank=7 * L * L)
        function = base.with_backend("cp", rank=7 * L * L)
        function.tp.backward = "function"  # gradients through _CPProduct / _CPProductGrad
        models[(form, "cp_7L2_function")] = function
        if exact_file.is_file():
            models[(form, "cp_exact")] = base.with_backend("cp", factors=exact_file)
        models[(form, "sphere")] = base.with_backend("sphere")
        models[(form, "e3nn")] = base.with_backend("e3nn")
    batch = collate(models[(FORMS[0], "dense")], configs)

    def train_step(model=None) -> None:
        energies, forces = predict(model, batch, create_graph=True)
        ((energies**2).mean() + (forces**2).mean()).backward()
        model.zero_grad(set_to_none=True)

    def inference(model=None) -> None:
        predict(model, batch)

    threads = torch.get_num_threads()
    timers = {}
    for (form, name), model in models.items():
        for phase, fn in (("train_step", train_step), ("inference", inference)):
            call = lambda f=fn, m=model: f(m)  # noqa: E731
            call()  # warm-up
            timers[(form, name, phase)] = make_timer(
                call, f"model L={L} C={C}", f"{form} {name}", phase, threads
            )
    medians, measurements = run_rounds(timers, args.rounds, args.model_min_run_time)
    compare = compare_text([m for ms in measurements.values() for m in ms])
    print(compare, flush=True)
    results: dict[str, Any] = {form: {} for form in FORMS}
    for (form, name, phase), samples in medians.items():
        results[form].setdefault(name, {})[phase] = round_stats(samples)
    for per_name in results.values():
        dense = per_name["dense"]
        for name, entry in per_name.items():
            for phase in ("train_step", "inference"):
                entry[phase]["over_dense"] = entry[phase]["median_s"] / dense[phase]["median_s"]
                entry[phase]["tie_with_dense"] = name != "dense" and is_tie(
                    entry[phase], dense[phase]
                )
    return {
        "L": L,
        "channels": C,
        "layers": 2,
        "cutoff": 4.5,
        "dtype": "float64",
        "configs": len(configs),
        "atoms": int(batch.positions.shape[0]),
        "edges": int(batch.graph.src.shape[0]),
        "cp_exact_factors": str(exact_file.relative_to(ROOT)) if exact_file.is_file() else None,
        "variants": {
            "cp_7L2": "the best stored rank-7L^2 fit with the layer's default backward "
            f"({CPTensorProduct.backward!r})",
            "cp_7L2_function": "the same with backward='function' (the CP Function and its "
            "explicit second derivative)",
        },
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "results": results,
        "compare": compare,
    }


def summarize(results: dict[str, Any], Ls: list[int]) -> dict[str, Any]:
    """Per-edge exponents and the CP targets of one (form, channel count).

    Targets: CP at 7L^2 faster than e3nn at every L, and the CP forward at >= 60 % of the
    same-round matmul rate for L >= 3.
    """
    summary: dict[str, Any] = {"exponents": {}, "ratios_e3nn_over_method": {}, "targets": {}}
    for mode_key in ("eager", "compiled"):
        for phase in ("forward", "forward_backward"):
            for method in METHODS:
                ratios, Lfit, per_edge = {}, [], []
                for L in Ls:
                    methods = results[str(L)]["methods"]
                    if method not in methods:
                        continue
                    entry = timed(methods[method], mode_key)
                    base = timed(methods["e3nn"])
                    if entry and base:
                        ratios[str(L)] = base[phase]["median_s"] / entry[phase]["median_s"]
                    if entry:
                        Lfit.append(L)
                        per_edge.append(entry[phase]["seconds_per_edge"])
                key = f"{method}/{mode_key}/{phase}"
                if not Lfit:
                    continue
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
        r = summary["ratios_e3nn_over_method"].get(f"cp_7L2/eager/{phase}")
        if r:
            targets[f"cp_faster_than_e3nn_every_L/{phase}"] = all_or_none(
                [v > 1 for v in r.values()]
            )
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


def summaries(report: dict[str, Any]) -> dict[str, Any]:
    """summarize() for every (form, channel count) of a report."""
    return {
        form: {C: summarize(per_L, [int(L) for L in per_L]) for C, per_L in per_C.items()}
        for form, per_C in report["results"].items()
    }


def decision_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (form, L, C): fastest exact method, CP at 7L^2, their ratio and tie, the flop model."""
    rows = []
    for form, per_C in report["results"].items():
        for C, per_L in per_C.items():
            for L, result in per_L.items():
                methods = result["methods"]
                cp = timed(methods["cp_7L2"])
                exact_entries = {
                    m: timed(methods[m])
                    for m in EXACT_METHODS
                    if m in methods and timed(methods[m])
                }
                if not cp or not exact_entries:
                    continue
                row: dict[str, Any] = {
                    "form": form,
                    "L": int(L),
                    "channels": int(C),
                    "edges": result["edges"],
                }
                for phase in ("forward", "forward_backward"):
                    exact = {m: e[phase] for m, e in exact_entries.items()}
                    best = min(exact, key=lambda m: exact[m]["median_s"])
                    row[phase] = {
                        "fastest_exact": best,
                        "fastest_exact_ms_per_1k_edges": exact[best]["median_s"]
                        / result["edges"]
                        * 1e6,
                        "cp_7L2_ms_per_1k_edges": cp[phase]["median_s"] / result["edges"] * 1e6,
                        "cp_over_fastest_exact": cp[phase]["median_s"] / exact[best]["median_s"],
                        "tie": is_tie(cp[phase], exact[best]),
                    }
                model = result["flop_model_exact"]
                fewest = min(model, key=model.__getitem__)
                row["flop_model"] = {
                    "fewest_flops_exact": fewest,
                    "cp_over_fewest_exact": methods["cp_7L2"]["forward_flops"] / model[fewest],
                }
                rows.append(row)
    order = {f: i for i, f in enumerate(FORMS)}
    return sorted(rows, key=lambda r: (order[r["form"]], r["L"], r["channels"]))


def _ratio_cell(entry: dict[str, Any]) -> str:
    return f"{entry['cp_over_fastest_exact']:.2f}" + (" (tie)" if entry["tie"] else "")


def readme_tables(report: dict[str, Any]) -> str:
    """The README block: per-form times at the main channel count, decision tables, the model."""
    cfg = report["config"]
    main_c = str(cfg["main_channels"])
    load = cfg.get("loadavg_start"), cfg.get("loadavg_end")
    lines = [
        f"Run of {cfg['started']} on {cfg['device_name']} ({cfg['device']}, "
        f"threads={cfg['threads']}, {cfg['dtype']}, OMP_WAIT_POLICY={cfg['OMP_WAIT_POLICY']}); "
        f"load average {load[0][0]:.1f} at the start, {load[1][0]:.1f} at the end"
        + (f"; {cfg['machine_note']}" if cfg.get("machine_note") else "")
        + f". torch.utils.benchmark, {cfg['rounds']} interleaved rounds of one blocked_autorange "
        f"(min {cfg['min_run_time']} s) per variant; edges per cell = {cfg['edge_channels']} / C "
        "for every L. Cells: "
        + "; ".join(
            f"{form}: L = {', '.join(sorted(per_C[next(iter(per_C))], key=int))}, "
            f"C = {', '.join(per_C)}"
            for form, per_C in report["results"].items()
        )
        + ".",
    ]
    for form, per_C in report["results"].items():
        if main_c not in per_C:
            continue
        per_L = per_C[main_c]
        Ls = sorted(per_L, key=int)
        lines += [
            "",
            f"Layer form {form}: forward time in ms per 1000 edges, {main_c} channels, "
            f"{per_L[Ls[0]]['edges']} edges, eager, median of the round medians "
            "(± half the interquartile range of the round medians, in %):",
            "",
            "| method | " + " | ".join(f"L={L}" for L in Ls) + " |",
            "|---|" + "---|" * len(Ls),
        ]
        for method in FORM_METHODS[form]:
            cells = []
            for L in Ls:
                entry = timed(per_L[L]["methods"].get(method, {}))
                if entry:
                    f = entry["forward"]
                    ms = f["median_s"] / per_L[L]["edges"] * 1e6
                    half = 50 * (f["iqr_s"][1] - f["iqr_s"][0]) / f["median_s"]
                    cells.append(f"{ms:.3g} ±{half:.0f}%")
                else:
                    cells.append("–")
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
            for m in FORM_METHODS[form]
            if m in per_L[Ls[0]]["methods"] and per_L[Ls[0]]["methods"][m].get("missing")
        }
        if missing:
            lines += [
                "",
                "Not timed: " + "; ".join(f"{m}: {why}" for m, why in missing.items()) + ".",
            ]
    rows = decision_rows(report)
    for form in FORMS:
        form_rows = [r for r in rows if r["form"] == form]
        if not form_rows:
            continue
        lines += [
            "",
            f"Decision table, layer form {form} (fastest exact = fastest timed of "
            + ", ".join(m for m in EXACT_METHODS if m in FORM_METHODS[form])
            + "; ratio = CP 7L^2 time / fastest exact time, < 1 means CP wins, (tie) when the "
            "interquartile ranges of the round medians overlap; flop model = CP forward flops "
            "/ fewest forward flops of an exact form, counting nnz(M) for the dense contraction):",
            "",
            "| L | C | edges | fastest exact, fwd | ms/1k edges | CP 7L^2 | ratio fwd | fastest "
            "exact, fwd+bwd | ratio fwd+bwd | flop model: fewest | flop ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in form_rows:
            f, fb, fm = r["forward"], r["forward_backward"], r["flop_model"]
            lines.append(
                f"| {r['L']} | {r['channels']} | {r['edges']} | {f['fastest_exact']} | "
                f"{f['fastest_exact_ms_per_1k_edges']:.3g} | {f['cp_7L2_ms_per_1k_edges']:.3g} | "
                f"{_ratio_cell(f)} | {fb['fastest_exact']} | {_ratio_cell(fb)} | "
                f"{fm['fewest_flops_exact']} | {fm['cp_over_fewest_exact']:.2f} |"
            )
        wins = [
            f"L={r['L']} C={r['channels']} ({phase})"
            for r in form_rows
            for phase in ("forward", "forward_backward")
            if r[phase]["cp_over_fastest_exact"] < 1 and not r[phase]["tie"]
        ]
        lines += [
            "",
            f"Layer form {form}: CP at 7L^2 is faster than the fastest exact method, beyond the "
            "spread, " + (f"at: {', '.join(wins)}." if wins else "nowhere in this run."),
        ]
    if report.get("model"):
        lines += ["", model_table(report["model"])]
    return "\n".join(lines) + "\n"


def model_table(model: dict[str, Any]) -> str:
    """The whole-model table: train step and inference per backend and layer form."""
    load = model.get("loadavg") or [float("nan")]
    lines = [
        f"Whole potential (`--model`): L = {model['L']}, {model['channels']} channels, "
        f"{model['layers']} layers, {model['dtype']}, one batch of {model['configs']} Cu-Au EMT "
        f"configurations ({model['atoms']} atoms, {model['edges']} edges), load average "
        f"{load[0]:.1f}. Median ms over the rounds, and the ratio to dense in the same layer form "
        "((tie) when the interquartile ranges overlap)."
        + "".join(f" {k}: {v}." for k, v in model.get("variants", {}).items()),
        "",
        "| backend | shared: train step ms | / dense | inference ms | / dense | per_channel: "
        "train step ms | / dense | inference ms | / dense |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    names = list(model["results"][FORMS[0]])
    for name in names:
        cells = []
        for form in FORMS:
            entry = model["results"][form].get(name)
            for phase in ("train_step", "inference"):
                if entry is None:
                    cells += ["–", "–"]
                    continue
                e = entry[phase]
                tie = " (tie)" if e["tie_with_dense"] else ""
                cells += [f"{e['median_s'] * 1e3:.1f}", f"{e['over_dense']:.2f}{tie}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0


def run_once(fn: Callable[[], Any], sync: Callable[[], None]) -> tuple[float, int]:
    """Wall seconds of one call (device work included) and the minor page faults it took."""
    faults = minor_faults()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0, minor_faults() - faults


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
            "\nCP at 7L^2 alone, an earlier study (shared form, hand-timed medians; "
            "`--methods cp_7L2 --L 3 4 6 --channels 64 --threads T --edge-scale S` of the previous "
            "version of this script; rounds as in each JSON), forward GFLOP/s / same-run matmul "
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


def plot(report: dict[str, Any], path: Path) -> None:
    """Four panels: per-edge forward time (main C, both forms), CP / fastest exact per C,
    CP's fraction of the matmul rate, and measured against flop-model time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main_c = str(report["config"]["main_channels"])
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.8))
    colors = {m: f"C{i}" for i, m in enumerate(METHODS)}
    styles = {"shared": "-", "per_channel": "--"}
    for form, per_C in report["results"].items():
        per_L = per_C.get(main_c, {})
        Ls = sorted(per_L, key=int)
        for method in FORM_METHODS[form]:
            points = [
                (int(L), e["forward"]["seconds_per_edge"] * 1e6)
                for L in Ls
                if (e := timed(per_L[L]["methods"].get(method, {})))
            ]
            if points:
                axes[0].plot(
                    *zip(*points, strict=True),
                    styles[form],
                    color=colors[method],
                    marker="o",
                    label=f"{method} ({form})",
                )
        cp = [
            (int(L), e["forward"]["fraction_of_matmul"])
            for L in Ls
            if (e := timed(per_L[L]["methods"]["cp_7L2"]))
        ]
        if cp:
            axes[2].plot(*zip(*cp, strict=True), styles[form], marker="o", label=f"cp_7L2 ({form})")
    axes[0].set(xscale="log", yscale="log", xlabel="L", ylabel="forward time per edge [µs]")
    axes[0].set_title(f"forward, {main_c} channels (solid shared, dashed per channel)")
    for i, C in enumerate(sorted({r["channels"] for r in decision_rows(report)})):
        for form in FORMS:
            points = [
                (r["L"], r["forward"]["cp_over_fastest_exact"])
                for r in decision_rows(report)
                if r["form"] == form and r["channels"] == C
            ]
            if points:
                axes[1].plot(
                    *zip(*points, strict=True),
                    styles[form],
                    color=f"C{i}",
                    marker="o",
                    label=f"C={C} ({form})",
                )
    axes[1].axhline(1.0, color="grey", lw=0.8)
    axes[1].set(yscale="log", xlabel="L", ylabel="CP 7L^2 / fastest exact (forward)")
    axes[1].set_title("CP time / fastest exact time (< 1: CP wins)")
    axes[2].axhline(0.6, color="grey", lw=0.8, ls="--")
    axes[2].set(xlabel="L", ylabel="forward GFLOP/s / same-run matmul GFLOP/s")
    axes[2].set_title("CP forward efficiency")
    for form, per_C in report["results"].items():
        for method in FORM_METHODS[form]:
            points = [
                (e["forward"]["model_s"] * 1e3, e["forward"]["median_s"] * 1e3)
                for per_L in per_C.values()
                for result in per_L.values()
                if (e := timed(result["methods"].get(method, {})))
            ]
            if points:
                axes[3].scatter(
                    *zip(*points, strict=True),
                    color=colors[method],
                    s=14,
                    marker="o" if form == "shared" else "x",
                    label=f"{method} ({form})",
                )
    lo, hi = axes[3].get_xlim()
    axes[3].plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    axes[3].set(
        xscale="log",
        yscale="log",
        xlabel="flop model: flops / matmul rate [ms]",
        ylabel="measured forward [ms]",
    )
    axes[3].set_title("measured vs flop model (every cell)")
    for ax in axes:
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3, which="both")
    cfg = report["config"]
    fig.suptitle(
        f"TDN layer vs exact products on {cfg['device_name']} ({cfg['threads']} threads, "
        f"{cfg['dtype']}, load {cfg['loadavg_start'][0]:.1f}); edges per cell in the JSON",
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    p.add_argument("--quick", action="store_true", help="L = 1..3, 16 and 64 channels, few edges")
    p.add_argument("--L", type=int, nargs="+", default=None, help="degrees (default 1..6)")
    p.add_argument(
        "--channels", type=int, nargs="+", default=None, help="channel counts (default 64 16 256)"
    )
    p.add_argument(
        "--forms",
        default=",".join(FORMS),
        help="comma-separated layer forms: shared (y = Y(r̂) for all channels), per_channel",
    )
    p.add_argument(
        "--edge-channels",
        type=int,
        default=None,
        help="edges x channels per cell (edges = this / C, the same for every L; default 8192, "
        "65536 on CUDA; --quick 1024)",
    )
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 11)")
    p.add_argument(
        "--min-run-time",
        type=float,
        default=None,
        help="seconds of each blocked_autorange (default 0.05; --quick 0.01)",
    )
    p.add_argument("--matmul-size", type=int, default=None, help="default 2048 CPU, 8192 CUDA")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile timings")
    p.add_argument(
        "--compile-methods",
        default="",
        help="comma-separated methods to time under torch.compile too (first --channels only; "
        "default none)",
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
        help="comma-separated methods to time (default all)",
    )
    p.add_argument("--no-model", action="store_true", help="skip the whole-model benchmark")
    p.add_argument("--model-L", type=int, default=2, help="L of the whole-model benchmark")
    p.add_argument("--model-channels", type=int, default=16)
    p.add_argument(
        "--model-configs",
        type=int,
        default=8,
        help="Cu-Au configurations in the model benchmark's batch (1..8; default 8)",
    )
    p.add_argument(
        "--model-min-run-time",
        type=float,
        default=None,
        help="seconds of each model blocked_autorange (default 0.2; --quick 0.01)",
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
    cuda = args.device == "cuda"
    args.L = args.L or (QUICK["L"] if args.quick else [1, 2, 3, 4, 5, 6])
    args.channels = args.channels or (QUICK["channels"] if args.quick else [64, 16, 256])
    if any(L < 1 or L > so3.MAX_L for L in args.L):
        p.exit(2, f"bench_layer: --L values must lie in 1..{so3.MAX_L}\n")
    if not 1 <= args.model_L <= 4:
        p.exit(2, "bench_layer: --model-L must lie in 1..4 (the exact factor files)\n")
    if not 1 <= args.model_configs <= 8:
        p.exit(2, "bench_layer: --model-configs must lie in 1..8\n")
    if min(args.channels) < 1 or args.threads < 1 or args.model_channels < 1:
        p.exit(2, "bench_layer: --channels, --model-channels and --threads must be >= 1\n")
    if args.rounds is not None and args.rounds < 1:
        p.exit(2, "bench_layer: --rounds must be >= 1\n")
    args.rounds = args.rounds or (QUICK["rounds"] if args.quick else 11)
    if args.edge_channels is None:
        args.edge_channels = QUICK["edge_channels"] if args.quick else (65536 if cuda else 8192)
    if args.edge_channels < 1:
        p.exit(2, "bench_layer: --edge-channels must be >= 1\n")
    if args.min_run_time is None:
        args.min_run_time = QUICK["min_run_time"] if args.quick else 0.05
    if args.model_min_run_time is None:
        args.model_min_run_time = QUICK["min_run_time"] if args.quick else 0.2
    if args.min_run_time <= 0 or args.model_min_run_time <= 0:
        p.exit(2, "bench_layer: --min-run-time and --model-min-run-time must be > 0\n")
    args.forms = [f for f in args.forms.split(",") if f]
    unknown = sorted(set(args.forms) - set(FORMS))
    if unknown or not args.forms:
        p.exit(2, f"bench_layer: unknown --forms {unknown}; choose from {FORMS}\n")
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        p.exit(2, f"bench_layer: unknown --methods {unknown}; choose from {METHODS}\n")
    if args.matmul_size is None:
        args.matmul_size = 8192 if cuda else (QUICK["matmul_size"] if args.quick else 2048)
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
        for form, per_C in report["results"].items():
            assert form in FORMS, form
            per_C[str(report["config"]["main_channels"])]
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
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
        report["summary"] = summaries(report)
        report["decision"] = decision_rows(report)
        write_outputs(report, args)
        return report
    device = torch.device(args.device)
    dtype = torch.float32
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    else:
        torch.backends.cuda.matmul.allow_tf32 = False  # true float32 rates for every method
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
        "forms": args.forms,
        "L": args.L,
        "channels": args.channels,
        "main_channels": args.channels[0],
        "edge_channels": args.edge_channels,
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
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "rounds": args.rounds,
        "min_run_time": args.min_run_time,
        "timer": "torch.utils.benchmark.Timer.blocked_autorange, one per variant per round",
        "machine_note": args.note,
        "notes": [
            "CP factors of cp_7L2 and cp_exact are random of the right shape: fit quality does "
            "not change the speed; cp_sphere uses the exact sphere-rule factors.",
            "forward is timed under torch.no_grad(); forward_backward back-propagates a fixed "
            "random output gradient to x, y (edge_vec for edge_frame) and weight.",
            "edge_frame takes the edge vectors and builds its rotations inside the timed call; "
            "the other methods get y precomputed (not timed).",
            "e3nn and cuequivariance inputs are prepared in their layout beforehand (not timed).",
            "Edges per cell = edge_channels / C for every L, so per-edge times across L are "
            "comparable (the previous version cut the edges from 20000 to 250 with L).",
            "Every round runs one blocked_autorange of every variant of the cell and of the "
            "matmul in turn; median_s is the median of the round medians, iqr_s their quartiles; "
            "a tie is an overlap of the interquartile intervals.",
            "On a shared CPU the timings are noisy: see loadavg per cell and the matmul rates.",
        ],
    }
    results: dict[str, Any] = {form: {str(C): {} for C in args.channels} for form in args.forms}
    for L in args.L:
        for C in args.channels:
            for form in args.forms:
                entry, compile_spent = benchmark_case(
                    form, L, C, args, device, dtype, compile_spent
                )
                results[form][str(C)][str(L)] = entry
    report: dict[str, Any] = {"config": config, "results": results}
    if not args.no_model:
        report["model"] = model_benchmark(args, device)
    config["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    config["wall_s"] = time.time() - start
    config["compile_s_total"] = compile_spent
    report["summary"] = summaries(report)
    report["decision"] = decision_rows(report)
    write_outputs(report, args)
    print(f"wrote {args.out} ({config['wall_s']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
