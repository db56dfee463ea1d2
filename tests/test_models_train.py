"""Training a TDN potential: loss goes down, determinism, checkpoints, the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tdn_theory.models import TDNCalculator, TDNPotential, data
from tdn_theory.models.checkpoint import CheckpointError, load_potential, save_potential
from tdn_theory.models.train import (
    TrainSettings,
    collate,
    errors,
    fit_reference_energies,
    predict,
    train,
)
from tdn_theory.train_potential import main

FACTORS = Path(__file__).resolve().parent.parent / "experiments/results/factors"


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("TDN_THEORY_CACHE")
    os.environ["TDN_THEORY_CACHE"] = str(cache)
    try:
        yield data.load_dataset("cuau-fcc", n_configs=12, seed=0)
    finally:
        if old is None:
            del os.environ["TDN_THEORY_CACHE"]
        else:
            os.environ["TDN_THEORY_CACHE"] = old


def _model(**kwargs):
    options = {"L": 1, "channels": 4, "layers": 1, "cutoff": 4.0, "seed": 0} | kwargs
    return TDNPotential(["Cu", "Au"], **options)


def test_batched_prediction_equals_one_structure_at_a_time(configs):
    model = _model(layers=2)
    batch = collate(model, configs[:3])
    energies, forces = predict(model, batch)
    for s, atoms in enumerate(configs[:3]):
        e, f = model.energy_and_forces(
            atoms.get_positions(), atoms.get_atomic_numbers(), np.asarray(atoms.cell), atoms.pbc
        )
        assert float(energies[s].detach()) == pytest.approx(float(e.detach()), abs=1e-10)
        torch.testing.assert_close(forces[batch.structure == s], f, atol=1e-10, rtol=0)


def test_a_short_training_run_lowers_the_loss(configs):
    train_set, val_set, _ = data.split(configs, seed=0)
    model = _model(channels=8)
    fit_reference_energies(model, train_set)  # what train() starts with: judge the gradient steps
    before = errors(model, train_set)
    result = train(model, train_set, val_set, TrainSettings(epochs=8, lr=1e-2, batch_size=1))
    after = errors(model, train_set)
    assert after["force_rmse_ev_per_A"] < 0.85 * before["force_rmse_ev_per_A"]

    def loss(e):  # the training loss with the default weights (10, 1)
        return 10 * e["energy_rmse_ev_per_atom"] ** 2 + e["force_rmse_ev_per_A"] ** 2

    # the references start fitted to the untrained network's residual, so the energy error
    # starts near its floor for this tiny set; the loss as a whole must still fall
    assert loss(after) < 0.75 * loss(before)
    assert 1 <= result.best_epoch <= len(result.history) <= 8


def test_training_is_deterministic_for_a_seed(configs):
    train_set, val_set, _ = data.split(configs, seed=0)
    states = []
    for _ in range(2):
        model = _model(seed=3)
        train(model, train_set, val_set, TrainSettings(epochs=2, batch_size=4, seed=3))
        states.append(model.state_dict())
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_bad_training_settings_are_refused():
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        TrainSettings(epochs=0)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        TrainSettings(lr=float("nan"))
    with pytest.raises(ValueError, match="nothing to train"):
        TrainSettings(energy_weight=0, force_weight=0)
    with pytest.raises(ValueError, match="dipole_weight must be a finite number >= 0"):
        TrainSettings(dipole_weight=-1.0)


@pytest.mark.parametrize("backend", ["dense", "cp"])
def test_checkpoint_round_trip_gives_the_same_model(configs, tmp_path, backend):
    factors = FACTORS / "exact_unit_all_L1.npz" if backend == "cp" else None
    model = _model(backend=backend, factors=factors)
    with torch.no_grad():
        model.readout_2.mul_(1.7)
    path = save_potential(tmp_path / "m.pt", model, {"note": "test"})
    loaded, info = load_potential(path, expect={"L": 1, "backend": backend})
    assert info == {"note": "test"}
    atoms = configs[0].copy()
    atoms.calc = TDNCalculator(loaded)
    e, f = model.energy_and_forces(
        atoms.get_positions(), atoms.get_atomic_numbers(), np.asarray(atoms.cell), atoms.pbc
    )
    assert atoms.get_potential_energy() == pytest.approx(float(e), abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), f.detach().numpy(), atol=1e-12)


def test_checkpoint_for_another_model_or_altered_is_refused(tmp_path):
    path = save_potential(tmp_path / "m.pt", _model())
    with pytest.raises(CheckpointError, match="is for L = 1, expected 2"):
        load_potential(path, expect={"L": 2})
    payload = torch.load(path, weights_only=True)
    payload["state"]["readout_2"] = payload["state"]["readout_2"] * 2
    torch.save(payload, tmp_path / "altered.pt")
    with pytest.raises(CheckpointError, match="does not match its SHA-256"):
        load_potential(tmp_path / "altered.pt")
    raw = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_potential(tmp_path / "cut.pt")
    np.savez(tmp_path / "other.npz", A=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a readable|not a tdn_theory"):
        load_potential(tmp_path / "other.npz")


def test_checkpoint_never_replaces_a_special_file(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="FIFO"):
        save_potential(fifo, _model())
    assert fifo.exists() and not fifo.is_file()


def test_cli_trains_and_writes_a_model_the_calculator_loads(configs, tmp_path, capsys):
    out = tmp_path / "model.pt"
    status = main(
        [
            "--data",
            "cuau-fcc",
            "--n-configs",
            "12",
            "--backend",
            "cp",
            "--L",
            "1",
            "--factors",
            str(FACTORS / "exact_unit_all_L1.npz"),
            "--channels",
            "4",
            "--layers",
            "1",
            "--cutoff",
            "4.0",
            "--epochs",
            "2",
            "--rotations",
            "2",
            "--out",
            str(out),
            "--json",
            "--quiet",
        ]
    )
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_train"] + report["n_val"] + report["n_test"] == 12
    assert report["test_force_mae_mev_per_A"] > 0 and report["epochs_run"] == 2
    # exact factors: the trained model is equivariant to rounding
    assert report["force_equivariance_worst_found"] < 1e-9
    model, info = load_potential(out, expect={"backend": "cp", "rank": 8})
    assert info["report"]["test_force_mae_mev_per_A"] == report["test_force_mae_mev_per_A"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backend", "dense", "--L", "-1"], "--L must be an integer >= 0"),
        (["--backend", "cp", "--L", "1"], "needs exactly one of --rank"),
        (["--backend", "cp", "--L", "1", "--rank", "0"], "--rank must be an integer >= 1"),
        (["--backend", "cp", "--L", "1", "--rank", "2.5"], "--rank must be an integer"),
        (["--backend", "dense", "--L", "1", "--rank", "4"], "are for --backend cp"),
        (["--backend", "dense", "--L", "1", "--lr", "nan"], "--lr must be a finite number > 0"),
        (["--backend", "dense", "--L", "1", "--bogus"], "unrecognized arguments"),
        (["--backend", "tucker", "--L", "1"], "invalid choice"),
        (
            ["--backend", "dense", "--L", "1", "--n-configs", "9"],
            "--n-configs must be an integer >= 10",
        ),
        (
            ["--backend", "cp", "--L", "2", "--factors", str(FACTORS / "exact_unit_all_L1.npz")],
            "is for d = 4, but --L 2 needs d = 9",
        ),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    out = tmp_path / "m.pt"
    status = main(["--data", "cuau-fcc", *argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_refuses_unknown_data_and_special_out(tmp_path, capsys):
    assert main(["--data", "nope", "--backend", "dense", "--L", "1"]) == 2
    assert "neither a file nor a named set" in capsys.readouterr().err
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    argv = ["--data", "cuau-fcc", "--backend", "dense", "--L", "1", "--out", str(fifo)]
    assert main(argv) == 2
    assert "FIFO" in capsys.readouterr().err
