"""Command line: train a TDN interatomic potential on energies, forces and (optionally) dipoles.

    python -m tdn_theory.train_potential --data cuau-fcc --backend cp --L 2 --rank 28 --epochs 30
    python -m tdn_theory.train_potential --data ethanol-gfn2 --backend cp --L 2 --rank 28 --dipole-weight 1

``--data`` is a named set (:data:`tdn_theory.models.data.DATASETS`: EMT metals, and GFN2-xTB molecules
which need the extra ``qm``; generated on first use and cached) or any extended-XYZ file with energies
and forces; ``--energy-key``, ``--forces-key``, ``--dipole-key`` name its labels (e.g. MACE's
``REF_energy``, ``REF_forces``, ``REF_dipole``), and optionally stresses (``--stress-key``, or virials
converted to stresses with ``--virials-key``). ``--dipole-weight`` > 0 adds the dipole head and trains
it on the dipoles; ``--stress-weight`` > 0 trains on the stresses. The message normalisation
``avg_neighbors`` is by default the mean neighbour count of the training configurations within the
cutoff (``--avg-neighbors data``), stored in the checkpoint. The configurations are split into
train / validation / test (80/10/10, ``--split-seed``; ``--split trajectory`` holds out whole
trajectories); the model (``--seed``) is trained with
:func:`tdn_theory.models.train.train` and written to ``--out`` after every epoch that improved the
validation loss (atomic: an interrupted run leaves the best model so far, never a partial file).
The report gives the test energy MAE (meV/atom; for molecules also meV and kcal/mol per molecule),
force MAE (meV/Å), stress MAE (meV/Å^3, when the test data carry stresses), dipole MAE (e·Å) with the
dipole head, the trained model's force-equivariance
error: the RMS of ``F(Rx) - R F(x)`` relative to the RMS of the test data's forces (and absolute,
meV/Å), mean over ``--rotations`` Haar rotations and the worst value found by a Nelder-Mead search
from the worst of them (a lower bound on the maximum), on up to 4 test configurations; the dipole's
rotation error ``|mu(Rx) - R mu(x)|``; and the time per epoch.

Integrity: an existing ``--out`` is refused unless ``--overwrite``, and ``--out`` may never be one of
the inputs (``--data``, ``--factors``; same file after resolving links). Every configuration (train,
validation and test) is checked before training; seeds are integers in [0, 2**32 - 1]; the memory
a run needs is estimated up front (parameters, neighbour pairs, activations) and a run needing more
than half of the machine's memory is refused with the estimate. If the last checkpoint cannot be
written, the report is printed anyway and the command exits 1.

Exit status 0 on success, 2 with one line on bad input, 1 when training diverged or the model
could not be written, 130 when interrupted.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from tdn_theory._checks import MAX_SEED
from tdn_theory._cli import OneLineParser, UsageError, check_output_path, parse_int

BACKEND_CHOICES = ("dense", "e3nn", "cp", "sphere")
PROG = "train_potential"


def build_parser() -> OneLineParser:
    p = OneLineParser(
        prog="python -m tdn_theory.train_potential",
        allow_abbrev=False,
        description="Train a TDN potential (message passing with a pluggable tensor product) on "
        "energies and forces, and report its test errors and force equivariance.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="named set (cuau-fcc, agpd-cluster, ethanol-gfn2, malonaldehyde-gfn2) or an extxyz file",
    )
    p.add_argument(
        "--energy-key", default="energy", help="energy label of the file (default energy)"
    )
    p.add_argument(
        "--forces-key", default="forces", help="forces label of the file (default forces)"
    )
    p.add_argument(
        "--dipole-key", default="dipole", help="dipole label of the file (default dipole)"
    )
    p.add_argument("--backend", required=True, choices=BACKEND_CHOICES)
    p.add_argument("--L", required=True, help="maximal degree of the features, integer >= 0")
    p.add_argument("--rank", help="CP rank for --backend cp (fitted and cached)")
    p.add_argument("--factors", help="factor file for --backend cp (instead of --rank)")
    p.add_argument("--parity", default="all", choices=("all", "even"))
    p.add_argument("--channels", default="16", help="channels per degree (default 16)")
    p.add_argument("--layers", default="2", help="interaction layers (default 2)")
    p.add_argument("--cutoff", default="4.5", help="neighbour cutoff in Å (default 4.5)")
    p.add_argument("--epochs", default="30", help="maximal epochs (default 30)")
    p.add_argument("--batch-size", default="8", help="configurations per step (default 8)")
    p.add_argument("--lr", default="5e-3", help="AdamW learning rate (default 5e-3)")
    p.add_argument("--weight-decay", default="0", help="AdamW weight decay (default 0)")
    p.add_argument(
        "--energy-weight", default="10", help="weight of the per-atom energy MSE (default 10)"
    )
    p.add_argument("--force-weight", default="1", help="weight of the force MSE (default 1)")
    p.add_argument(
        "--stress-weight",
        default="0",
        help="weight of the stress MSE in (eV/Å^3)^2 (default 0: no stress training)",
    )
    p.add_argument(
        "--stress-key",
        default="stress",
        help="info key of the stress (eV/Å^3) in an extxyz file, e.g. REF_stress (default stress)",
    )
    p.add_argument(
        "--virials-key",
        help="info key of the virial (eV) in an extxyz file, e.g. REF_virials; converted to "
        "the stress -W/V (instead of --stress-key)",
    )
    p.add_argument(
        "--avg-neighbors",
        default="data",
        help="message normalisation: 'data' (mean neighbour count of the training set within "
        "the cutoff, default) or a positive number (12 was the fixed value before)",
    )
    p.add_argument(
        "--dipole-weight",
        default="0",
        help="weight of the dipole MSE (e·Å)^2; > 0 adds the dipole head (default 0)",
    )
    p.add_argument(
        "--patience", default="10", help="early stopping patience in epochs (default 10)"
    )
    p.add_argument("--seed", default="0", help="model initialisation and batch order (default 0)")
    p.add_argument("--split-seed", default="0", help="train/validation/test split (default 0)")
    p.add_argument(
        "--split",
        default="random",
        choices=("random", "trajectory"),
        help="random configurations, or whole held-out trajectories (default random)",
    )
    p.add_argument("--data-seed", default="0", help="generator seed of a named set (default 0)")
    p.add_argument("--n-configs", help="configurations of a named set (default: the set's size)")
    p.add_argument(
        "--rotations", default="8", help="Haar rotations for the equivariance check (default 8)"
    )
    p.add_argument("--float32", action="store_true", help="train in float32 (default float64)")
    p.add_argument(
        "--out",
        default="model.pt",
        help="checkpoint file (default model.pt); an existing file is refused unless --overwrite",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out (after the first improving epoch of this run)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _parse_float(text: str, name: str, *, positive: bool) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        raise UsageError(
            f"--{name} must be a finite number {'> 0' if positive else '>= 0'}, got {text!r}"
        )
    return value


def _check_factor_file(path: str, L: int) -> None:
    """Refuse a missing, damaged or wrong-size factor file before any data is generated."""
    from tdn_theory.cp import FactorFileError, load_factors

    if not Path(path).is_file():
        raise UsageError(f"--factors {path!r}: no such file")
    try:
        fit, _ = load_factors(path)
    except FactorFileError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    d = (L + 1) ** 2
    if fit.A.shape[0] != d:
        raise UsageError(
            f"--factors {path!r} is for d = {fit.A.shape[0]}, but --L {L} needs d = {d}; "
            "use a factor file fitted for this L"
        )


MEMORY_FRACTION = 0.5  # refuse a run whose estimated memory exceeds this share (as fit_cp)
BYTES_PER_CONFIG = (
    16 * 2**10
)  # a generated configuration held in memory (atoms, labels, extxyz text)


def _available_memory() -> int:
    from tdn_theory.fit_cp import _available_memory as physical

    return physical()


def _check_memory(need: float, what: str, advice: str) -> None:
    have = _available_memory()
    if need > MEMORY_FRACTION * have:
        raise UsageError(
            f"{what} needs about {need / 2**30:.3g} GiB of memory, more than "
            f"{MEMORY_FRACTION:.0%} of this machine's {have / 2**30:.1f} GiB; {advice}"
        )


def _parse_seed(text: str, name: str) -> int:
    value = parse_int(text, name, 0)
    if value > MAX_SEED:
        raise UsageError(f"--{name} must be an integer in [0, {MAX_SEED}], got {value}")
    return value


def _check_not_an_input(out: Path, inputs: dict[str, str | None]) -> None:
    """Refuse an --out that is one of the inputs (same file after resolving links)."""
    if not out.exists():
        return
    for option, path in inputs.items():
        if path is not None and Path(path).exists() and out.samefile(path):
            raise UsageError(
                f"--out {str(out)!r} is the {option} file; writing the model there would "
                "destroy it: choose another --out"
            )


def validate(args) -> dict[str, Any]:
    """Checked settings; UsageError (one line) on bad input."""
    from tdn_theory.fit_cp import estimated_memory
    from tdn_theory.models.budget import parameter_bytes

    s: dict[str, Any] = {"data": args.data, "backend": args.backend, "parity": args.parity}
    s["L"] = parse_int(args.L, "L", 0)
    if s["L"] > 6:
        raise UsageError(f"--L {s['L']} is beyond what this command trains (L <= 6)")
    for name in ("channels", "layers", "epochs", "batch-size", "patience", "rotations"):
        s[name.replace("-", "_")] = parse_int(getattr(args, name.replace("-", "_")), name, 1)
    for name in ("seed", "split-seed", "data-seed"):
        s[name.replace("-", "_")] = _parse_seed(getattr(args, name.replace("-", "_")), name)
    # 80/10/10 needs at least 10 configurations for a non-empty validation and test split
    s["n_configs"] = None if args.n_configs is None else parse_int(args.n_configs, "n-configs", 10)
    if s["n_configs"] is not None:
        _check_memory(
            BYTES_PER_CONFIG * s["n_configs"],
            f"--n-configs {s['n_configs']}",
            "generate fewer configurations",
        )
    s["cutoff"] = _parse_float(args.cutoff, "cutoff", positive=True)
    s["lr"] = _parse_float(args.lr, "lr", positive=True)
    for name in ("weight-decay", "energy-weight", "force-weight", "stress-weight", "dipole-weight"):
        s[name.replace("-", "_")] = _parse_float(
            getattr(args, name.replace("-", "_")), name, positive=False
        )
    if not any(s[k] for k in ("energy_weight", "force_weight", "stress_weight", "dipole_weight")):
        raise UsageError(
            "--energy-weight, --force-weight, --stress-weight and --dipole-weight are all 0: "
            "nothing to train"
        )
    s.update(_stress_and_normalisation(args))
    for name in ("energy_key", "forces_key", "dipole_key"):
        value = getattr(args, name)
        if not value or any(c.isspace() or c in "=\"'" for c in value):
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be a plain key name such as REF_energy, got {value!r}")
        s[name] = value
    s["split"] = args.split
    if s["lr"] * s["weight_decay"] >= 1:
        raise UsageError(
            f"--weight-decay {args.weight_decay} times --lr {args.lr} must be below 1 (AdamW "
            "scales every weight by 1 - lr * weight_decay per step); lower --weight-decay"
        )
    itemsize = 4 if args.float32 else 8
    _check_memory(
        parameter_bytes(s["L"], s["channels"], s["layers"], itemsize=itemsize),
        f"--channels {s['channels']} --layers {s['layers']} at --L {s['L']}",
        "use fewer channels or layers",
    )
    _check_memory(8 * 32 * s["rotations"], f"--rotations {s['rotations']}", "use fewer rotations")
    if args.backend == "cp":
        if (args.rank is None) == (args.factors is None):
            raise UsageError("--backend cp needs exactly one of --rank R or --factors FILE")
        s["rank"] = None if args.rank is None else parse_int(args.rank, "rank", 1)
        s["factors"] = args.factors
        if s["rank"] is not None:
            _check_memory(
                estimated_memory(s["L"], s["rank"]),
                f"--rank {s['rank']} at --L {s['L']} (fitting the factors)",
                "use a smaller rank",
            )
        if args.factors is not None:
            _check_factor_file(args.factors, s["L"])
    elif args.rank is not None or args.factors is not None:
        raise UsageError(f"--rank and --factors are for --backend cp, not {args.backend}")
    else:
        s["rank"] = s["factors"] = None
    from tdn_theory.models.data import DATASETS, is_named_set

    try:
        named = is_named_set(args.data)
    except ValueError as exc:
        raise UsageError(f"--data {exc}") from None
    if not named:
        if Path(args.data).is_dir():
            raise UsageError(f"--data {args.data!r} is a folder; give an extended-XYZ file")
        if not Path(args.data).is_file():
            raise UsageError(
                f"--data {args.data!r} is neither a file nor a named set ({', '.join(sorted(DATASETS))})"
            )
        if args.n_configs is not None:
            raise UsageError("--n-configs is for named sets; a file is used whole")
        if s["data_seed"] != 0:
            raise UsageError("--data-seed is for named sets; a file is used as it is")
    s["named"] = named
    s["out"] = check_output_path(args.out)
    _check_not_an_input(
        s["out"], {"--data": None if named else args.data, "--factors": args.factors}
    )
    if s["out"].exists() and not args.overwrite:
        raise UsageError(
            f"--out {str(s['out'])!r} exists; pass --overwrite to replace it, or choose another --out"
        )
    s["overwrite"] = bool(args.overwrite)
    s["float32"] = bool(args.float32)
    s["json"], s["quiet"] = bool(args.json), bool(args.quiet)
    return s


def _stress_and_normalisation(args) -> dict[str, Any]:
    """Checked --stress-key, --virials-key and --avg-neighbors."""
    out: dict[str, Any] = {"stress_key": args.stress_key, "virials_key": args.virials_key}
    for name in ("stress_key", "virials_key"):
        if out[name] is not None and not out[name].strip():
            raise UsageError(f"--{name.replace('_', '-')} must be a non-empty key")
    if args.virials_key is not None and args.stress_key != "stress":
        raise UsageError("give --stress-key or --virials-key, not both")
    if args.avg_neighbors == "data":
        out["avg_neighbors"] = None
    else:
        out["avg_neighbors"] = _parse_float(args.avg_neighbors, "avg-neighbors", positive=True)
    return out


def _check_sizes(s: dict[str, Any], model, configs: list) -> list:
    """Memory guard on the data (neighbour pairs, then activations of the largest batch); returns
    every configuration prepared, which checks them all (bad ones named by their index)."""
    import numpy as np

    from tdn_theory.models.budget import activation_bytes, neighbour_pairs
    from tdn_theory.models.train import prepare_all

    itemsize = 4 if s["float32"] else 8
    pairs = max(neighbour_pairs(len(a), np.asarray(a.cell), a.pbc, s["cutoff"]) for a in configs)
    _check_memory(
        64 * pairs,
        f"--cutoff {s['cutoff']:g} (about {pairs:.3g} neighbour pairs in one configuration)",
        "use a smaller cutoff",
    )
    where = f"{s['data']}: configuration" if not s["named"] else f"{s['data']} configuration"
    items = prepare_all(model, configs, where)
    edges = sorted((int(item["dst"].shape[0]), int(item["positions"].shape[0])) for item in items)
    biggest = edges[-s["batch_size"] :]
    rank = int(model.tp.A.shape[1]) if s["backend"] in ("cp", "sphere") else 0
    need = activation_bytes(
        s["L"],
        s["channels"],
        s["layers"],
        sum(e for e, _ in biggest),
        sum(n for _, n in biggest),
        rank=rank,
        itemsize=itemsize,
    )
    _check_memory(
        need + 40 * sum(e for e, _ in edges),
        f"training with --channels {s['channels']} --layers {s['layers']} --batch-size "
        f"{s['batch_size']} --cutoff {s['cutoff']:g} ({biggest[-1][0]} edges in the largest "
        "configuration)",
        "use a smaller batch, cutoff, channels or layers",
    )
    return items


def run(s: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Load data, check it all, train, save, evaluate; returns the report (rank 0 of a torchrun
    writes).

    ``s["progress"]`` (a dict) records ``written_epoch``, the last epoch written to ``--out``
    in this run (None before), for the message after an interruption.
    """
    import torch

    from tdn_theory.models import TDNPotential, average_neighbors, data
    from tdn_theory.models.checkpoint import CheckpointError, model_settings, save_potential
    from tdn_theory.models.distributed import SINGLE
    from tdn_theory.models.molecules import MissingExtraError
    from tdn_theory.models.train import TrainSettings, errors, symmetry_errors, train

    ctx = context or SINGLE
    start = time.perf_counter()
    state = s.setdefault("progress", {"written_epoch": None})
    try:
        with ctx.main_first():  # rank 0 fills the data-set and fit caches, then the others read
            configs = data.load_dataset(
                s["data"],
                n_configs=s["n_configs"],
                seed=s["data_seed"],
                stress_key=s.get("stress_key", "stress"),
                virials_key=s.get("virials_key"),
                progress=not s["quiet"] and ctx.is_main,
                energy_key=s["energy_key"],
                forces_key=s["forces_key"],
                dipole_key=s["dipole_key"],
            )
            splitter = data.split_trajectories if s["split"] == "trajectory" else data.split
            train_set, val_set, test_set = splitter(configs, seed=s["split_seed"])
            model = TDNPotential(
                data.species_of(configs),
                s["L"],
                s["channels"],
                s["layers"],
                s["cutoff"],
                backend=s["backend"],
                rank=s["rank"],
                factors=s["factors"],
                parity=s["parity"],
                seed=s["seed"],
                avg_neighbors=s.get("avg_neighbors") or 12.0,  # "data": set below
                dtype=torch.float32 if s["float32"] else torch.float64,
                dipole=s["dipole_weight"] > 0,
            )
        settings = TrainSettings(
            epochs=s["epochs"],
            batch_size=s["batch_size"],
            lr=s["lr"],
            weight_decay=s["weight_decay"],
            energy_weight=s["energy_weight"],
            force_weight=s["force_weight"],
            dipole_weight=s["dipole_weight"],
            patience=s["patience"],
            seed=s["seed"],
            stress_weight=s.get("stress_weight", 0.0),
        )
        _check_sizes(s, model, configs)  # every split, before any training
        if s.get("avg_neighbors") is None:  # --avg-neighbors data (after the size guard)
            model.avg_neighbors = average_neighbors(train_set, s["cutoff"])
    except (ValueError, MissingExtraError) as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    info = {
        "data": s["data"],
        "n_configs": len(configs),
        "split_seed": s["split_seed"],
        "split": s["split"],
        "keys": {k: s[k] for k in ("energy_key", "forces_key", "dipole_key")},
        "data_seed": s["data_seed"],
        "train_settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "avg_neighbors_from": "training data"
        if s.get("avg_neighbors") is None
        else "--avg-neighbors",
    }

    def checkpoint(record: dict, improved: bool) -> None:  # train() calls it on rank 0 only
        if not improved:
            return
        try:
            save_potential(s["out"], model, dict(info, best_epoch=record["epoch"]))
        except CheckpointError as exc:  # e.g. a full disk: keep training, retry at the end
            if not state.get("warned"):
                warnings.warn(
                    f"{exc}; training continues, the final write will retry", stacklevel=2
                )
                state["warned"] = True
            return
        state["written_epoch"] = record["epoch"]

    try:
        result = train(
            model,
            train_set,
            val_set,
            settings,
            on_epoch=checkpoint,
            progress=not s["quiet"],
            context=ctx,
        )
    except ValueError as exc:  # settings refused by the optimiser, ...
        raise UsageError(str(exc).splitlines()[0]) from None
    test = errors(model, test_set, batch_size=s["batch_size"], context=ctx)
    if not ctx.is_main:
        return {}
    symmetry = symmetry_errors(model, test_set[:4], rotations=s["rotations"], seed=s["seed"])
    report = {
        "data": s["data"],
        "n_train": len(train_set),
        "n_val": len(val_set),
        "n_test": len(test_set),
        "force_std_eV_per_A": data.force_std(test_set),
        **_dipole_spread(test_set),
        "model": model_settings(model),
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "seconds_per_epoch": result.seconds_per_epoch,
        "processes": ctx.world,
        **{f"test_{k}": v for k, v in test.items()},
        **symmetry,
        "out": str(s["out"]),
        "seconds": time.perf_counter() - start,
    }
    try:
        save_potential(
            s["out"], model, dict(info, best_epoch=result.best_epoch, report=_plain(report))
        )
    except CheckpointError as exc:
        report["out"] = None
        report["write_error"] = str(exc)
    else:
        state["written_epoch"] = result.best_epoch
    return report


def _dipole_spread(configs) -> dict:
    """Mean |mu - mean mu| (e·Å) of the configurations' dipoles: the scale for a dipole MAE."""
    import numpy as np

    dipoles = [a.calc.results.get("dipole") for a in configs if a.calc is not None]
    if not dipoles or any(d is None for d in dipoles):
        return {}
    mu = np.array(dipoles)
    return {"dipole_spread_eA": float(np.abs(mu - mu.mean(axis=0)).mean())}


def _plain(report: dict) -> dict:
    return json.loads(json.dumps(report, default=float))


def format_table(r: dict[str, Any]) -> str:
    m = r["model"]
    rank = f", rank {m['rank']}" if "rank" in m else ""
    rows = [
        ("data", f"{r['data']} ({r['n_train']} train / {r['n_val']} val / {r['n_test']} test)"),
        (
            "model",
            f"L={m['L']}, {m['channels']} channels, {m['layers']} layers, {m['backend']}{rank}, parity {m['parity']}"
            + (", dipole head" if m.get("dipole") else ""),
        ),
        (
            "epochs",
            f"{r['epochs_run']} (best {r['best_epoch']}{', stopped early' if r['stopped_early'] else ''}), {r['seconds_per_epoch']:.2f} s/epoch",
        ),
        (
            "test energy MAE",
            f"{r['test_energy_mae_mev_per_atom']:.2f} meV/atom, "
            f"{r['test_energy_mae_mev_per_structure']:.1f} meV = "
            f"{r['test_energy_mae_kcal_per_mol']:.3f} kcal/mol per structure",
        ),
        (
            "test force MAE",
            f"{r['test_force_mae_mev_per_A']:.1f} meV/Å (force std {1e3 * r['force_std_eV_per_A']:.0f} meV/Å)",
        ),
        ("force equivariance", _equivariance_row(r)),
        ("energy invariance", f"mean {r['energy_invariance_mev_per_atom']:.2e} meV/atom"),
        *(
            [("test stress MAE", f"{r['test_stress_mae_mev_per_A3']:.3f} meV/Å^3")]
            if "test_stress_mae_mev_per_A3" in r
            else []
        ),
        ("model file", r["out"] if r["out"] is not None else "NOT WRITTEN (see the error)"),
    ]
    if "test_dipole_mae_eA" in r:
        spread = r.get("dipole_spread_eA")
        spread = "" if spread is None else f" (dipole spread {spread:.3f} e·Å)"
        rows.insert(
            -1,
            (
                "test dipole MAE",
                f"{r['test_dipole_mae_eA']:.4f} e·Å = {r['test_dipole_mae_debye']:.3f} D per component{spread}",
            ),
        )
    if "dipole_rotation_error_eA" in r:
        rows.insert(
            -1,
            (
                "dipole rotation",
                f"mean |mu(Rx) - R mu(x)| {r['dipole_rotation_error_eA']:.2e} e·Å",
            ),
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _equivariance_row(r: dict[str, Any]) -> str:
    absolute = (
        f"{r['force_equivariance_abs_mean_mev_per_A']:.2e} / "
        f"{r['force_equivariance_abs_worst_found_mev_per_A']:.2e} meV/Å"
    )
    if r["force_equivariance_mean"] is None:
        return f"mean / worst found {absolute} (the test forces are all zero)"
    return (
        f"mean {r['force_equivariance_mean']:.2e}, worst found "
        f"{r['force_equivariance_worst_found']:.2e} (RMS of F(Rx) - R F(x) over the test force RMS "
        f"{1e3 * r['force_scale_eV_per_A']:.0f} meV/Å); absolute {absolute}"
    )


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = " ".join(str(message).split())
    print(f"{PROG}: warning: {text}", file=sys.stderr if file is None else file)


def _interrupted(settings: dict[str, Any] | None) -> str:
    state = (settings or {}).get("progress") or {}
    epoch = state.get("written_epoch")
    if epoch is None:
        return f"{PROG}: interrupted before any model was written; --out was not touched"
    return f"{PROG}: interrupted; --out holds the best model of this run (epoch {epoch})"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 success, 2 bad input, 1 diverged or not written,
    130 interrupted)."""
    from tdn_theory.models import distributed

    context = distributed.SINGLE
    settings: dict[str, Any] | None = None
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            args = build_parser().parse_args(argv)
            settings = validate(args)
            context = distributed.from_environment()  # torchrun: one process of the group
            report = run(settings, context)
        except UsageError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        except FloatingPointError as exc:  # the loss diverged
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(_interrupted(settings), file=sys.stderr)
            return 130
        finally:
            distributed.shutdown(context)
    if not context.is_main:
        return 0
    if settings["json"]:
        print(json.dumps(_plain(report)))
    else:
        print(format_table(report))
    if report.get("write_error"):
        print(f"{PROG}: error: the model was NOT saved: {report['write_error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
