"""Regenerate the result tables and quoted figures of README.md, experiments/README.md and the proofs.

Usage::

    python -m experiments.readme            # rewrite the generated sections of FILES
    python -m experiments.readme --check    # exit 1 (and name the sections) when they are stale

A generated section sits between two marker lines::

    <!-- BEGIN generated: NAME (python -m experiments.readme) -->
    ...
    <!-- END generated: NAME -->

and is rebuilt by SECTIONS[NAME] from experiments/results/*.json (and the fit store), so every
fitted error the README quotes is the number stored there: one number, one source.
This is the one README generator (the layer benchmark's tables included: section "bench_layer").
tests/test_readme.py fails when a committed file differs from what this writes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np

from experiments import _io

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXPERIMENTS_README = ROOT / "experiments" / "README.md"
#: The files with generated sections: README (short tables), experiments/README.md (the full
#: tables of every result) and the proofs that quote measured numbers.
FILES = (
    README,
    EXPERIMENTS_README,
    ROOT / "proofs" / "equivariance_bound.md",
    ROOT / "proofs" / "universality.md",
)
BEGIN = "<!-- BEGIN generated: {name} (python -m experiments.readme) -->"
END = "<!-- END generated: {name} -->"
_BLOCK = re.compile(
    r"<!-- BEGIN generated: (?P<name>[a-z0-9_]+) \(python -m experiments\.readme\) -->\n"
    r"(?P<body>.*?)"
    r"<!-- END generated: (?P=name) -->",
    re.S,
)


def _load(results: Path, name: str) -> dict:
    path = results / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"experiments.readme: {path} is missing; run python -m experiments.{name}")
    return json.loads(path.read_text())


def _err(x: float) -> str:
    """A relative error: 0 below 1e-10 (exact to rounding), else 3 significant digits."""
    if x < 1e-10:
        return "0"
    return f"{x:#.3g}" if x < 0.1 else f"{x:.3f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _span(values: list[float], fmt: Callable[[float], str]) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}-{fmt(hi)}"


def _wrap(text: str, bullet: bool = False) -> str:
    """A paragraph (or a '- ' bullet) wrapped at 110 columns, as the rest of the README."""
    return textwrap.fill(
        text,
        width=110,
        subsequent_indent="  " if bullet else "",
        break_long_words=False,
        break_on_hyphens=False,
    )


def _join(values) -> str:
    return ", ".join(str(v) for v in values)


# ------------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------------


def _atlas_rows(results: Path) -> list[dict]:
    rows = _load(results, "rank_atlas")["rows"]
    return [rows[f"unit/all/{L}"] for L in range(1, 7) if f"unit/all/{L}" in rows]


def _exact_ranks(results: Path) -> list[tuple[int, bool]]:
    """(smallest exact rank found, whether it is a construction) for L = 1..6 (rank atlas)."""
    out = []
    for r in _atlas_rows(results):
        src = r["upper"]["source"]
        out.append((r["upper"]["rank"], src not in ("fit",) and not src.startswith("fit store")))
    return out


def atlas(results: Path) -> str:
    rows = _atlas_rows(results)
    lines = [
        "| L | d | paths | lower bound | exact CP found at | 7 L^2 | (L+1)^4 | rel. error at 7 L^2 "
        "| interval | 7 L^2 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        up = r["upper"]
        cons = (
            ""
            if up["source"] == "fit" or up["source"].startswith("fit store")
            else " (construction)"
        )
        lines.append(
            f"| {r['L']} | {r['d']} | {r['paths']} | {r['lower']['value']} | {up['rank']}{cons} | "
            f"{r['rank_7L2']} | {r['thm32']} | {_err(r['error_7L2'])} | "
            f"[{r['interval'][0]}, {r['interval'][1]}] | {r['position_7L2']} |"
        )
    exact = _exact_ranks(results)
    fitted = [R for R, c in exact if not c]
    errs = [r["error_7L2"] for r in rows]
    lines += [
        "",
        _wrap(
            "What it means for choosing a rank: the paper's R = 7L^2 lies inside every interval, so no "
            "lower bound rules out an exact CP there, but none was found: every exact CP we could find "
            f"needs more terms ({_join(fitted)} for L = 1..{len(fitted)} by fitting; "
            f"{_join(R for R, c in exact if c)} for L = {len(fitted) + 1}..{len(exact)} by "
            f"construction), and the best fits at 7L^2 (tdn_theory.cp.best_known) stop at "
            f"{_span(errs, _pct)} relative error. So TDN layers at the published rank are "
            "approximately, not exactly, equivariant (error <= 2 ||E_(1)||_2 ||x|| ||y||)."
        ),
    ]
    return "\n".join(lines)


def schedules(results: Path) -> str:
    data = _load(results, "rank_schedules")
    names = ["7L", "7L^2", "16log^2(L+1)", "(L+1)^4"]
    smallest = "smallest exact rank found"
    lines = [
        "| L | 7L | 7L^2 | ceil(16 ln^2(L+1)) | (L+1)^4 = d^2 | smallest exact rank found "
        "[certified lower bound] |",
        "|----|----|------|------------------|---------------|------------------------|",
    ]
    for b in data["per_L"]:
        s = b["schedules"]
        cells = [f"R={s[n]['rank']}: {_err(s[n]['relative_error'])}" for n in names]
        cells.append(f"{s[smallest]['rank']} [>= {b['rank_lower_bound']}]")
        lines.append(f"| {b['L']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def nbody(results: Path) -> str:
    data = _load(results, "nbody_ranks")
    lines = [
        "| R | paper | fit rel. error | mean eps_rel | exact Haar RMS eps_abs | max eps_abs "
        f"({data['rows'][0]['n_samples']} samples) |",
        "|---|-------|----------------|--------------|------------------------|"
        "----------------------------|",
    ]
    for r in data["rows"]:
        paper = r["paper"] if isinstance(r["paper"], str) else f"{r['paper']:.2f}"
        paper = paper.replace("<", "< ")
        err = _err(r["relative_error"])
        if r["method"].startswith("constructive"):
            err += " (Thm 3.2 construction, R = d^2)"
        lines.append(
            f"| {r['rank']} | {paper} | {err} | {r['eps_rel_mean']:.2g} | {r['haar_rms']:.2g} | "
            f"{r['eps_abs_max']:.2g} |"
        )
    return "\n".join(lines)


def network(results: Path) -> str:
    """The network-equivariance table (experiments.network_equivariance) and its findings."""
    from experiments.network_equivariance import markdown_table

    data = _load(results, "network_equivariance")
    rows, note = data["rows"], data["closing_note"]
    approx = [r for r in rows if not r["exact"]]

    def at3(L: int) -> dict:
        return note[f"L{L}_7L2_depth3"]

    worst3 = {L: at3(L) for L in (1, 2, 3, 4) if f"L{L}_7L2_depth3" in note}
    gains = [
        r["force_rel_adversarial"] / r["force_rel_haar_max"]
        for r in approx
        if r["force_rel_haar_max"] > 0
    ]
    tight = [r["force_tightness"] for r in approx if r["force_tightness"]]
    vacuous = sorted({(r["L"], r["depth"]) for r in approx if r["force_bound_rel"] >= 1})
    first_vacuous = {
        L: min(d for LL, d in vacuous if LL == L) for L in sorted({L for L, _ in vacuous})
    }
    energy7 = [r["energy_rel_worst"] for r in approx if r["schedule"] == "7L^2" and r["L"] >= 2]
    mirror = note["mirror_max"]
    bullets = [
        "Tensor-product error after 3 layers (7L^2, worst over the geometries): "
        + "; ".join(
            f"L = {L}: tensor error {_pct(v['tensor_relative_error'])} -> force-equivariance error "
            f"{v['force_rel_worst']:.1e} (Haar mean {v['force_rel_haar_mean']:.1e})"
            for L, v in worst3.items()
        )
        + ". Energies are far less affected (relative energy-invariance error "
        f"{min(energy7):.0e} to {max(energy7):.0e} at 7L^2, L >= 2, depth 1..6).",
        f"Theorem 1 (Lipschitz propagation) holds on every point but is loose: force bound / worst "
        f"found {1 / max(tight):.0f}x to {1 / min(tight):.0e}x over the approximate points; relative "
        "to |F| it reaches 1 (vacuous) from depth "
        + ", ".join(f"{d} at L = {L}" for L, d in first_vacuous.items())
        + ".",
        "Theorem 2 (first order on the orbit plus proven remainder) holds on every point (a test "
        "re-checks the committed JSON); at 7L^2, depth 1..6, the largest bound / worst found is "
        + "; ".join(
            f"L = {L[1:]}: energy {v['energy_ratio2_max']:.1f}x, forces {v['force_ratio2_max']:.1f}x "
            f"(Theorem 1: {v['energy_ratio1_max']:.0f}x, {v['force_ratio1_max']:.0f}x)"
            for L, v in data["tightness"].items()
        )
        + ". The first-order estimate (not a bound) lies within "
        + f"{min(v['estimate_ratio_range'][0] for v in data['tightness'].values()):.2f}-"
        + f"{max(v['estimate_ratio_range'][1] for v in data['tightness'].values()):.2f}x of the worst found.",
        f"The adversarial search over rotations raises the worst force defect by "
        f"{min(gains):.3g}-{max(gains):.3g}x over the Haar samples.",
        f'Mirror check (exact dense backend): with parity "all" the energy changes under x -> -x by '
        f"up to {mirror['all']['energy_rel']:.1e} (relative; forces {mirror['all']['force_rel']:.1e}); "
        f'with parity "even" by {mirror["even"]["energy_rel"]:.1e} '
        f"(forces {mirror['even']['force_rel']:.1e}).",
    ]
    return (
        markdown_table(data).rstrip("\n")
        + "\n\n"
        + "\n".join(_wrap("- " + b, bullet=True) for b in bullets)
    )


def _paired_text(p: dict | None, fmt: str, unit: str) -> str:
    """'+1.2 meV/Å [-0.3, +2.7] (not distinguishable)' from a paired-difference record."""
    if p is None:
        return "not measured"
    if p["low"] is None:
        return f"{p['mean']:+{fmt}} {unit} ({p['verdict']})"
    return f"{p['mean']:+{fmt}} {unit} [{p['low']:+{fmt}}, {p['high']:+{fmt}}] ({p['verdict']})"


def accuracy(results: Path) -> str:
    """The accuracy-vs-rank tables (experiments.accuracy_vs_rank) and the answers they give."""
    from experiments.accuracy_vs_rank import markdown

    data = _load(results, "accuracy_vs_rank")
    L = data["L"]
    bullets = []
    for d in data["data"]:
        rows = {r["name"]: r for r in data["summary"] if r["data"] == d["name"]}
        dense = rows["dense"]
        name = d["name"]
        n_seeds = len(dense["seeds"])
        base = (
            f"{name}, dense: test energy MAE {dense['test_energy_mae_mev_per_atom']:.2f} meV/atom against "
            f"{d['mean_energy_mae_mev_per_atom']:.2f} for predicting the mean training energy"
        )
        if "test_dipole_mae_eA" in dense:
            base += (
                f"; dipole MAE {dense['test_dipole_mae_eA']:.4f} e·Å against "
                f"{d['mean_dipole_mae_eA']:.4f} for predicting the mean dipole"
            )
        base += f" (mean over {n_seeds} seed{'s' if n_seeds > 1 else ''})."
        bullets.append(base)
        r7 = rows.get(f"cp{7 * L * L}")
        if r7 is not None:
            paired = r7["paired"]
            text = (
                f"{name}, CP at 7L^2 (R = {r7['rank']}, tensor error {_pct(r7['tensor_relative_error'])}) "
                f"minus dense, paired over seeds {r7['seeds']} [95 % interval]: force MAE "
                f"{_paired_text(paired.get('test_force_mae_mev_per_A'), '.2f', 'meV/Å')}, energy MAE "
                f"{_paired_text(paired.get('test_energy_mae_mev_per_atom'), '.3f', 'meV/atom')}"
            )
            if "test_dipole_mae_eA" in paired:
                text += f", dipole MAE {_paired_text(paired['test_dipole_mae_eA'], '.4f', 'e·Å')}"
                f_rel = (
                    paired["test_force_mae_mev_per_A"]["mean"] / dense["test_force_mae_mev_per_A"]
                )
                mu_rel = paired["test_dipole_mae_eA"]["mean"] / dense["test_dipole_mae_eA"]
                text += (
                    f". Relative to dense the mean changes are {100 * f_rel:+.1f}% (forces) and "
                    f"{100 * mu_rel:+.1f}% (dipole)"
                )
            text += (
                f". Its trained model is not equivariant: force-equivariance error "
                f"{r7['force_equivariance_mean']:.1e} (Haar mean), {r7['force_equivariance_worst_found']:.1e}"
                " (worst found)"
            )
            if "dipole_rotation_error_eA" in r7:
                text += f", dipole rotation error {r7['dipole_rotation_error_eA']:.1e} e·Å"
            exact = [
                rows[n]["dipole_rotation_error_eA"]
                for n in rows
                if n in ("dense", "sphere", "dense_even", f"cp{data['ranks']['exact']}")
                and "dipole_rotation_error_eA" in rows[n]
            ]
            if exact:
                text += f", against at most {max(exact):.0e} e·Å for the exact backends"
            bullets.append(text + ".")
        sph = rows.get("sphere")
        if sph is not None:
            bullets.append(
                f"{name}, sphere (exact, other path weights) minus dense: force MAE "
                f"{_paired_text(sph['paired'].get('test_force_mae_mev_per_A'), '.2f', 'meV/Å')}."
            )
        capped = [r["label"] for r in rows.values() if not r["all_stopped_early"]]
        if capped:
            bullets.append(
                f"{name}: runs that reached the epoch cap ({data['settings']['epochs']}) before early "
                f"stopping, i.e. not fully converged: {', '.join(capped)} (best epochs in the table)."
            )
    speed = data.get("speed")
    if speed:
        bullets.append(
            f"Time on CPU ({data['speed_data']}), whole model, one training step relative to dense: "
            + ", ".join(
                f"{n} {t['train_step_vs_dense']:.2f}x" for n, t in speed.items() if n != "dense"
            )
            + "; inference: "
            + ", ".join(
                f"{n} {t['inference_vs_dense']:.2f}x" for n, t in speed.items() if n != "dense"
            )
            + "."
        )
    return (
        markdown(data).rstrip("\n")
        + "\n\n"
        + "\n".join(_wrap("- " + b, bullet=True) for b in bullets)
    )


def molecules(results: Path) -> str:
    """The molecular sets (experiments.molecular_sets) and the raw-vs-residual reference energies
    (experiments.reference_energies)."""
    from experiments.molecular_sets import markdown as sets_table

    sets = _load(results, "molecular_sets")
    ref = _load(results, "reference_energies")
    mal = next(r for r in sets["sets"] if "proton_transfers" in r)
    pt = mal["proton_transfers"]
    prod_ps = (
        mal["n_configs"] * mal["recipe"]["snapshot_every"] * mal["recipe"]["timestep_fs"] / 1000
    )
    bullets = [
        f"tblite {sets['tblite_version']}: moving a cation of charge +1 by 1 Å changes the returned dipole by "
        f"{sets['dipole_change_per_A_of_a_unit_cation']:.6f}, so the dipole is in e·Å (Debye would give 4.80); "
        "the sets store e·Å.",
        f"malonaldehyde-gfn2: {pt['md_transfers']} proton transfers during the {prod_ps:.0f} ps of sampled MD "
        f"(every step watched, 0.3 Å hysteresis); {pt['snapshots_side_1']} of {pt['n_configs']} snapshots "
        f"have the proton on the other oxygen ({pt['snapshot_side_changes']} changes between consecutive "
        "snapshots).",
    ]
    for case in ref["cases"]:
        runs = [r for r in ref["runs"] if r["data"] == case["data"]]
        for seed in case["seeds"]:
            raw = next(r for r in runs if r["seed"] == seed and r["reference_fit"] == "raw")
            res = next(r for r in runs if r["seed"] == seed and r["reference_fit"] == "residual")
            bullets.append(
                f"Reference energies, {case['data']} seed {seed} (dense): test energy MAE "
                f"{raw['test_energy_mae_mev_per_atom']:.2f} meV/atom with references fitted to the raw "
                f"energies, {res['test_energy_mae_mev_per_atom']:.2f} fitted to the residual of the "
                f"untrained network (whose mean output is {raw['initial_network_mev_per_atom']:.0f} "
                f"meV/atom); force MAE {raw['test_force_mae_mev_per_A']:.1f} and "
                f"{res['test_force_mae_mev_per_A']:.1f} meV/Å."
            )
    return (
        sets_table(sets).rstrip("\n")
        + "\n\n"
        + "\n".join(_wrap("- " + b, bullet=True) for b in bullets)
    )


def sphere(results: Path) -> str:
    data = _load(results, "exact_vs_approximate")
    lines = [
        "| L | N (Lebedev) | 3N | 7L^2 | smallest exact found (full sphere) | sphere CP ms | "
        "unit CP 7L^2 ms | dense CG ms | e3nn ms | equivariance error sphere / unit 7L^2 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def ms(x: float) -> str:
        return f"{x:.2g}" if x < 10 else f"{x:.0f}"

    for r in data["rows"]:
        t, e, k = r["time_ms"], r["equivariance"], r["ranks"]
        unit = e.get("unit_cp_7L2")
        lines.append(
            f"| {r['L']} | {r['sphere']['lebedev']['points']} | {k['sphere_3N_lebedev']} | "
            f"{k['unit_7L2']} | {k['smallest_exact_all'] or '–'} | {ms(t['sphere_cp'])} | "
            f"{ms(t['unit_cp_7L2'])} | {ms(t['dense_cg'])} | {ms(t['e3nn_uvu'])} | "
            f"{e['sphere_cp']:.1e} / {'–' if unit is None else f'{unit:.1e}'} |"
        )
    comp = [r for r in data["rows"] if r.get("compressed")]
    prov = data["provenance"]
    lines += [
        "",
        _wrap(
            "Compression from the construction (`tdn_theory.cp.compress_exact`, "
            f"{data['settings']['compress_budget']:g} s per tensor) finds smaller exact ranks (upper "
            "bounds; time-limited, so they vary with the machine's load): Gaunt part "
            f"{' / '.join(str(r['ranks']['smallest_exact_even']) for r in comp)} and full tensor "
            f"{' / '.join(str(r['ranks']['smallest_exact_all']) for r in comp)} for L = "
            f"{' / '.join(str(r['L']) for r in comp)}. Timings: one run, load average "
            f"{prov['load_average_start'][0]:.1f} at start and {prov['load_average_end'][0]:.1f} at end "
            "on the shared 2-core VM, so they are noisy."
        ),
    ]
    fitted = [r for r in data["rows"] if r["unit_cp"].get("fitted")]
    eq = [r["equivariance"]["unit_cp_7L2"] for r in fitted]
    sph = [r["equivariance"]["sphere_cp"] for r in data["rows"]]
    lines += [
        "",
        _wrap(
            f"The layer built from the sphere factors is equivariant to rounding ({_span(sph, lambda x: f'{x:.0e}')} "
            f"of ||M||_F), against {_span(eq, lambda x: f'{x:.0e}')} for the best known unit CP at 7L^2 "
            f"(L = 1..{len(fitted)}; max over {data['settings']['rotations']} rotations)."
        ),
    ]
    return "\n".join(lines)


def measured(results: Path) -> str:
    nb = _load(results, "nbody_ranks")["rows"]
    evr = _load(results, "error_vs_rank")["per_L"]
    exact = _exact_ranks(results)

    def at(block: dict, R: int) -> dict:
        return next(r for r in block["rows"] if r["rank"] == R)

    paper = [r["paper"] for r in nb]
    fit = [_err(r["relative_error"]) for r in nb]
    eps = [f"{r['eps_rel_mean']:.2g}" for r in nb]
    by_rank = {r["rank"]: r for r in nb}
    r20, r28 = by_rank[20], by_rank[28]
    seven = [at(b, 7 * b["L"] ** 2) for b in evr]
    err7 = [r["relative_error"] for r in seven]
    thm31 = [f"{r['thm31_relative_bound']:.2f}" for r in seven]
    haar = [f"{r['haar_rms']:.2g}" for r in seven]
    sevenL = [at(b, 7 * b["L"]) for b in evr if b["L"] >= 2]
    logs = [at(b, b["schedule_ranks"]["16log^2(L+1)"]) for b in evr if b["L"] >= 2]
    lower7L = {b["L"]: at(b, 7 * b["L"])["certified_lower_bound"] for b in evr}
    pos = [L for L, v in lower7L.items() if v > 0]
    lines = [
        f"- Paper, n-body table: {_join(p if isinstance(p, str) else f'{p:.2f}' for p in paper)} at "
        f"R = {_join(r['rank'] for r in nb)}. Measured (best known fits): the relative fit error is "
        f"{_join(fit)} and the mean eps_rel {_join(eps)}. The paper does not state its formula, and "
        f"the data do not single one out: at R = 20 and 28 the fit errors {_err(r20['relative_error'])}, "
        f"{_err(r28['relative_error'])} and the mean eps_rel {r20['eps_rel_mean']:.2g}, "
        f"{r28['eps_rel_mean']:.2g} are about equally close to the paper's 0.21, 0.02.",
        f"- Paper, R = 7L^2 is enough: the best known fit at 7L^2 has relative error "
        f"{_join(_pct(e) for e in err7)} for L = 1..{len(err7)}. No exact CP was found at 7L^2 (no "
        f"lower bound excludes one): the smallest exact ranks found are {_join(R for R, _ in exact)} "
        f"(the last {sum(c for _, c in exact)} are constructions), against 7L^2 = "
        f"{_join(7 * b['L'] ** 2 for b in evr)}. Exact RMS equivariance error at 7L^2: {_join(haar)} "
        "(unit inputs).",
        f"- Paper, Thm 3.1 (a priori, HOSVD form): its relative bound at 7L^2 is {_join(thm31)} for "
        f"L = 1..{len(thm31)}, so it is vacuous (>= 1). The a-posteriori bound 2||E_(1)||_2 held at "
        "every sampled point.",
        "- Certified Eckart-Young lower bound (exact arithmetic): positive only for R < d, e.g. "
        + ", ".join(f"{lower7L[L]:.2g} at L = {L}, R = 7L = {7 * L}" for L in pos[-2:])
        + ". It is zero at every 7L^2.",
        f"- Schedule 7L: {_span([r['relative_error'] for r in sevenL], _pct)} error for L >= 2; "
        f"schedule ceil(16 ln^2(L+1)): {_span([r['relative_error'] for r in logs], _pct)} for L >= 2 "
        "(exact only at L = 1, R = 8). (L+1)^4 = d^2 is exact by Thm 3.2's construction.",
    ]
    return "\n".join(_wrap(line, bullet=True) for line in lines)


def _exact_by_source(results: Path) -> list[str]:
    out = []
    for R, cons in _exact_ranks(results):
        out.append(f"{R} (construction)" if cons else str(R))
    return out


def proof_thm31(results: Path) -> str:
    bounds = _load(results, "bounds_vs_rank")["bounds"]
    exact = _exact_by_source(results)
    lines = [
        r"| $L$ | $d$ | paths | $B_{3.1}/\|M\|_F$ at $R = 7L^2$ | first non-vacuous $R$ | "
        r"Thm 3.2 exact rank $d^2$ | smallest exact rank found (rank atlas) |",
        "|---|---|---|---|---|---|---|",
    ]
    for L, b in sorted(bounds.items(), key=lambda kv: int(kv[0])):
        t, L = b["thm31"], int(L)
        lines.append(
            f"| {L} | {b['d']} | {b['paths']} | {t['relative_bound_at_7L2']:.2f} ($R={7 * L * L}$) | "
            f"{t['first_nonvacuous_rank']} | {b['d'] ** 2} | {exact[L - 1]} |"
        )
    return "\n".join(lines)


def proof_fitted(results: Path) -> str:
    bounds = _load(results, "bounds_vs_rank")["bounds"]
    lines = [
        r"| $L$, $R = 7L^2$ | $B_{3.1}/\|M\|_F$ | HOSVD truncation | best known fit |",
        "|---|---|---|---|",
    ]
    for L, b in sorted(bounds.items(), key=lambda kv: int(kv[0])):
        L = int(L)
        r = next(
            r
            for r in b["rows"]
            if r["rank"] == 7 * L * L and r["method"] in ("fit store", "fit_cp")
        )
        lines.append(
            f"| {L}, {7 * L * L} | {r['thm31_relative']:.2f} | {r['hosvd_relative']:.3f} | "
            f"{_err(r['relative_error'])} |"
        )
    return "\n".join(lines)


def proof_universality(results: Path) -> str:
    data = _load(results, "bounds_vs_rank")
    maps = data["random_maps"]
    exact = _exact_by_source(results)
    budgets = data["settings"].get("random_map_fit_cp", {})
    lines = [
        "| $L$ | $d$ | random map: smallest exact rank found (ranks tried) | unit CG tensor: smallest "
        "exact rank found (rank atlas / fit store) | $d^2$ |",
        "|---|---|---|---|---|",
    ]
    for L in range(1, 5):
        m = maps.get(str(L))
        cell = (
            "not run"
            if m is None
            else (f"{m['smallest_exact_rank'] or 'none'} ({_join(m['ranks'])})")
        )
        lines.append(f"| {L} | {(L + 1) ** 2} | {cell} | {exact[L - 1]} | {(L + 1) ** 4} |")
    lines += [
        "",
        f"Random-map fits: `fit_cp`, {budgets.get('restarts', 4)} restarts, seed 0, time "
        f"budget per fit {budgets.get('time_budget_s')} s by $L$.",
    ]
    return "\n".join(lines)


def bounds(results: Path) -> str:
    data = _load(results, "bounds_vs_rank")["bounds"]
    Ls = sorted(data, key=int)
    t = [data[L]["thm31"] for L in Ls]
    tight = [v for L in Ls for v in (data[L]["tightness_spectral_range"] or [])]
    at7 = [f"{x['relative_bound_at_7L2']:.2f}" for x in t]
    text = (
        f"Thm 3.1 (a priori) is vacuous (bound >= ||M||_F) below R = "
        f"{_join(x['first_nonvacuous_rank'] for x in t)} for L = {Ls[0]}..{Ls[-1]}, i.e. even beyond "
        f"the Thm 3.2 exact rank d^2 = {_join(data[L]['d'] ** 2 for L in Ls)}, and in particular at "
        f"7L^2 (bound/||M|| = {_join(at7)}). "
        "The a-posteriori bound held at every sampled and adversarial point; the worst case found "
        f"reaches {min(tight):.2f}-{max(tight):.2f} of 2||E_(1)||_2 on the best known fits that are not "
        "exact (the bound is attained on a constructed example)."
    )
    return _wrap(text)


def stress(results: Path) -> str:
    """Training on stresses and the data-derived avg_neighbors (experiments.stress_training)."""
    from experiments.stress_training import markdown

    data = _load(results, "stress_training")
    s, d = data["settings"], data["data"]
    prov = data["provenance"]

    def diff(arm: str, key: str, unit: str) -> str:
        p = data["paired"][arm][key]
        iv = p["interval_95"]
        interval = "" if iv is None else f", 95 % interval [{iv[0]:+.2f}, {iv[1]:+.2f}]"
        lower = sum(x < 0 for x in p["differences"])
        return (
            f"{p['mean']:+.2f} {unit} ({100 * p['relative_mean']:+.0f} % of "
            f"{p['base_mean']:.2f}{interval}; lower in {lower} of {len(p['differences'])} seeds)"
        )

    runs = {(r["arm"], r["seed"]): r for r in data["runs"]}
    cp = [r for r in data["runs"] if r["arm"] == "cp7"]
    head = (
        f"Data: cuau-fcc, {d['n_train']} train / {d['n_val']} val / {d['n_test']} test "
        f"configurations (test stress std {1e3 * d['stress_std_eV_per_A3']:.1f} meV/Å^3, mean "
        f"neighbour count {d['avg_neighbors_train']:.1f} within {s['cutoff']} Å). L = {s['L']}, "
        f"{s['channels']} channels, {s['layers']} layers, dense CG, {s['epochs']} epochs max, stress "
        f"weight {s['stress_weight']:g}; seeds {data['seeds']}; {prov['seconds'] / 60:.0f} min on "
        f"a shared machine (load {prov['load_average_start'][0]:.1f} at the start, "
        f"{prov['load_average_end'][0]:.1f} at the end). Best epochs "
        f"{min(r['best_epoch'] for r in data['runs'])}-{max(r['best_epoch'] for r in data['runs'])} "
        f"of {s['epochs']}"
        + (
            ": the runs had not converged (differences between arms of a short schedule)."
            if max(r["best_epoch"] for r in data["runs"]) >= s["epochs"] - 2
            else "."
        )
    )
    bullets = [
        "Training with the stress term changes the test stress MAE by "
        + diff("stress", "test_stress_mae_mev_per_A3", "meV/Å^3")
        + ", the force MAE by "
        + diff("stress", "test_force_mae_mev_per_A", "meV/Å")
        + " and the energy MAE by "
        + diff("stress", "test_energy_mae_mev_per_atom", "meV/atom")
        + " (paired over seeds, arm minus base).",
        f"avg_neighbors from the data ({d['avg_neighbors_train']:.1f} instead of 12) changes the "
        "test force MAE by "
        + diff("avg_data", "test_force_mae_mev_per_A", "meV/Å")
        + ", the energy MAE by "
        + diff("avg_data", "test_energy_mae_mev_per_atom", "meV/atom")
        + " and the stress MAE by "
        + diff("avg_data", "test_stress_mae_mev_per_A3", "meV/Å^3")
        + ".",
    ]
    if cp:
        f = np.mean([r["force_equivariance_mean"] for r in cp])
        st = np.mean([r["stress_equivariance_mean"] for r in cp])
        exact = max(r["stress_equivariance_mean"] for (a, _), r in runs.items() if a == "stress")
        bullets.append(
            f"CP at 7L^2 (R = {cp[0]['rank']}, L = {s['L']}), trained with stresses: "
            f"stress-equivariance error |sigma(Rx) - R sigma R^T| / |sigma| {st:.1e} beside the "
            f"force-equivariance error {f:.1e} (Haar means over {s['rotations']} rotations and "
            f"{s['sym_configs']} test configurations, mean over seeds); the exact dense model: "
            f"{exact:.0e} (rounding)."
        )
    return (
        head
        + "\n\n"
        + markdown(data).rstrip("\n")
        + "\n\n"
        + "\n".join(_wrap("- " + b, bullet=True) for b in bullets)
    )


def stress_short(results: Path) -> str:
    """README: the findings of experiments.stress_training (tables: experiments/README.md)."""
    text = stress(results)
    return text[text.index("\n- ") + 1 :]


def bench_layer(results: Path) -> str:
    """The layer benchmark's tables (experiments.bench_layer: the run, the CP and fault studies)."""
    from experiments import bench_layer as bench

    return bench.readme_block(_load(results, "bench_layer_cpu"), results).rstrip("\n")


def _first_table(
    text: str, keep: Callable[[list[str]], bool] = lambda cells: True, skip: int = 0
) -> str:
    """The first Markdown table of `text` after `skip` tables: its header and the rows whose
    cells pass `keep`."""
    lines = text.splitlines()
    start = -1
    for _ in range(skip + 1):
        start = next(
            i
            for i, line in enumerate(lines)
            if i > start and line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|"))
        )
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    table = lines[start:end]
    rows = [r for r in table[2:] if keep([c.strip() for c in r.strip("|").split("|")])]
    return "\n".join(table[:2] + rows)


#: The rows of the README's short layer tables (all of them: experiments/README.md).
SHORT_METHODS = (
    "dense_cg",
    "dense_cg_sparse",
    "edge_frame",
    "cp_7L2",
    "cp_exact",
    "e3nn",
    "cp_7L2 forward GFLOP/s / same-run matmul GFLOP/s",
)


def bench_layer_short(results: Path) -> str:
    """README: forward time per L, second input shared by the channels (bench_layer's first table)."""
    return _first_table(bench_layer(results), lambda cells: cells[0] in SHORT_METHODS)


def bench_layer_per_channel_short(results: Path) -> str:
    """README: forward time per L, second input per channel (bench_layer's second table)."""
    return _first_table(bench_layer(results), lambda cells: cells[0] in SHORT_METHODS, skip=1)


def bench_layer_model(results: Path) -> str:
    """README: the whole-model table of bench_layer (train step and inference, both forms)."""
    from experiments import bench_layer as bench

    report = _load(results, "bench_layer_cpu")
    return bench.model_table(report["model"]).rstrip("\n") if report.get("model") else ""


def network_short(results: Path) -> str:
    """README: the network table at depth 3 (all depths: experiments/README.md)."""
    return _first_table(network(results), lambda cells: cells[1] == "3")


def accuracy_short(results: Path) -> str:
    """README: the accuracy table alone (data line and findings: experiments/README.md)."""
    return _first_table(accuracy(results))


def parallel(results: Path) -> str:
    """Sweeps on 1 vs N Dask workers, training on 1 vs 2 processes, the study's estimate."""
    from experiments.bench_parallel import markdown

    return markdown(_load(results, "bench_parallel")).rstrip("\n")


def anchors(results: Path) -> str:
    """MACE and NequIP beside TDN (experiments.anchors): tables, paired differences, findings."""
    from experiments.anchors import markdown

    return markdown(_load(results, "anchors")).rstrip("\n")


def anchors_short(results: Path) -> str:
    """README: the findings of experiments.anchors (tables: experiments/README.md)."""
    from experiments.anchors import findings

    return "\n".join(_wrap("- " + f, bullet=True) for f in findings(_load(results, "anchors")))


SECTIONS: dict[str, Callable[[Path], str]] = {
    "anchors": anchors,
    "anchors_short": anchors_short,
    "parallel": parallel,
    "bench_layer": bench_layer,
    "bench_layer_short": bench_layer_short,
    "bench_layer_per_channel_short": bench_layer_per_channel_short,
    "bench_layer_model": bench_layer_model,
    "network_short": network_short,
    "accuracy_short": accuracy_short,
    "bounds": bounds,
    "proof_thm31": proof_thm31,
    "proof_fitted": proof_fitted,
    "proof_universality": proof_universality,
    "atlas": atlas,
    "schedules": schedules,
    "nbody": nbody,
    "sphere": sphere,
    "measured": measured,
    "network": network,
    "accuracy": accuracy,
    "stress": stress,
    "stress_short": stress_short,
    "molecules": molecules,
}


def render(text: str, results: Path = _io.RESULTS) -> str:
    """`text` with every generated section rebuilt; unknown or unclosed markers raise ValueError."""
    names = [m["name"] for m in _BLOCK.finditer(text)]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise ValueError(f"generated sections {unknown} that experiments.readme lacks")
    if text.count("<!-- BEGIN generated:") != len(names):
        raise ValueError("a BEGIN generated marker without its END marker")

    def build(m: re.Match) -> str:
        name = m["name"]
        return f"{BEGIN.format(name=name)}\n{SECTIONS[name](results)}\n{END.format(name=name)}"

    return _BLOCK.sub(build, text)


def stale_sections(text: str, results: Path = _io.RESULTS) -> list[str]:
    """Names of the generated sections whose text differs from what render() writes."""
    new = {m["name"]: m["body"] for m in _BLOCK.finditer(render(text, results))}
    old = {m["name"]: m["body"] for m in _BLOCK.finditer(text)}
    return [n for n in old if old[n] != new.get(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale sections (exit 1)")
    parser.add_argument("--results", type=Path, default=_io.RESULTS)
    args = parser.parse_args(argv)
    stale_files = []
    for path in FILES:
        text = path.read_text()
        try:
            if args.check:
                stale = stale_sections(text, args.results)
                if stale:
                    stale_files.append(f"{path.relative_to(ROOT)} {stale}")
                continue
            new = render(text, args.results)
        except ValueError as exc:
            parser.exit(2, f"error: {path.name}: {exc}\n")
        if new != text:
            _io.write_text_atomic(path, new)
            print(f"rewrote the generated sections of {path.relative_to(ROOT)}")
    if stale_files:
        print(
            f"generated sections out of date: {'; '.join(stale_files)}; "
            "run python -m experiments.readme"
        )
        return 1
    print("generated sections are current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
