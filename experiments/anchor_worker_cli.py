"""The command line every anchor worker shares (experiments/anchor_worker_<name>.py).

Standard library only: the workers import it from their own folder while running in the
anchors' environments, which do not have tdn_theory. experiments/anchors.py builds the commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_args(description: str, argv: list[str] | None = None, *, correlation: bool = False):
    """``train`` and ``time`` with the shared options; ``--correlation`` where the anchor has it."""
    parser = argparse.ArgumentParser(description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train", help="train with the anchor's command, evaluate on the test file"
    )
    for name in ("--train", "--val", "--test", "--workdir"):
        train.add_argument(name, type=Path, required=True)
    train.add_argument("--seed", type=int, required=True)
    train.add_argument("--epochs", type=int, required=True)
    train.add_argument("--cutoff", type=float, required=True)
    train.add_argument("--channels", type=int, default=16)
    train.add_argument("--layers", type=int, default=2)
    train.add_argument("--lmax", type=int, default=2)
    if correlation:
        train.add_argument("--correlation", type=int, default=3)
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--lr", type=float, default=0.01)
    timing = sub.add_parser("time", help="time training and inference steps of a saved model")
    for name in ("--model", "--batch", "--big"):
        timing.add_argument(name, type=Path, required=True)
    timing.add_argument("--rounds", type=int, default=5)
    return parser.parse_args(argv)
