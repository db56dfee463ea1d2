"""experiments.stress_training: the paired comparison over seeds."""

from __future__ import annotations

import pytest

from experiments.stress_training import METRICS, paired


def test_paired_differences_mean_and_student_t_interval():
    runs = []
    for seed, (base, arm) in enumerate([(10.0, 9.0), (12.0, 10.0), (11.0, 8.0)]):
        for name, value in (("base", base), ("stress", arm)):
            runs.append({"arm": name, "seed": seed, **dict.fromkeys(METRICS, value)})
    runs.append({"arm": "stress", "seed": 9, **dict.fromkeys(METRICS, 0.0)})  # unpaired: left out
    p = paired(runs, "stress")[METRICS[-1]]
    assert p["differences"] == [-1.0, -2.0, -3.0]
    assert p["mean"] == -2.0 and p["base_mean"] == 11.0
    # t(0.975, 2 dof) = 4.3027 (tables); std of the differences 1, three seeds
    half = 4.302652729911275 / 3**0.5
    assert p["interval_95"] == pytest.approx([-2.0 - half, -2.0 + half], rel=1e-9)
    one = paired([r for r in runs if r["seed"] == 0], "stress")[METRICS[0]]
    assert one["interval_95"] is None and one["mean"] == -1.0
