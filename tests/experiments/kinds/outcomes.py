"""A written-down Outcome: the deltas, foundations, snapshots and vectors an experiment
kind's document is built from, given as plain values (the documents' own logic is what the
kind tests check; tests/experiments/test_suite.py runs the kinds on real runs)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dv365.experiments.experiment import Setting

SETTING = Setting(seeds=(0, 1, 2), eval_days=3, codec="int4", max_history=4000,
                  foundation={"spec": "x.slice", "encoder": {"type": "fsa"}})


def average(value: float) -> dict:
    return {"like/ne": {"estimate": value, "low": value - 1e-3, "high": value + 1e-3},
            "average_binary_ne": {"estimate": value, "low": None, "high": None}}


@dataclass
class WrittenOutcome:
    deltas_by: dict = field(default_factory=dict)
    """(arm, family, serving, day, against) -> metrics"""
    vectors_by: dict = field(default_factory=dict)
    snapshots: dict = field(default_factory=dict)
    foundations: dict = field(default_factory=dict)
    seeds: tuple = (0, 1, 2)
    missing: list = field(default_factory=list)
    setting: Setting = SETTING

    def deltas(self, arm, family, *, serving=0, day=None, against=None):
        return self.deltas_by.get((arm, family, serving, day, against))

    def foundation(self, arm):
        return self.foundations.get(arm)

    def snapshot(self, arm):
        return self.snapshots.get(arm)

    def vectors(self, arm, day=0):
        return self.vectors_by.get((arm, day))

    def parameters(self, arm, family):
        return None

    def examples_per_s(self, arm, family):
        return None


def vectors(seed: int, noise: float = 0.0, base: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(50, 32)) if base is None else base
    return v + noise * rng.normal(size=v.shape)
