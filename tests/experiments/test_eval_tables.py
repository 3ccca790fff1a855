"""The tables of ``dv365 eval`` from a run directory: paired seeds only, relative deltas with
intervals, and Hit Rate deltas withheld when the control has too few hits."""

from __future__ import annotations

import json

import numpy as np

from dv365.experiments.eval_tables import MIN_HITS, markdown, write_tables

TASKS = ["like", "watch_time"]
KINDS = ["binary", "regression"]


def _run(root, family, variant, seed, arrays, tasks=TASKS, kinds=KINDS):
    folder = root / "runs" / family / variant / f"seed-{seed}"
    folder.mkdir(parents=True)
    np.savez(folder / "predictions.npz", **arrays)
    (folder / "result.json").write_text(json.dumps({
        "tasks": tasks, "kinds": kinds, "examples_per_s": 100.0 + seed,
        "parameters": 10}))


def _held_out(root, n=4000, seed=0):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 400, n)
    p = rng.uniform(0.05, 0.5, n)
    like = (rng.random(n) < p).astype(np.float32)
    watch = rng.exponential(10.0, n).astype(np.float32)
    np.savez(root / "held_out.npz", labels=np.stack([like, watch], 1), users=users,
             tasks=np.array(TASKS))
    return p, like, watch


def test_a_better_treatment_has_a_negative_ne_delta_whose_interval_excludes_zero(tmp_path):
    p, like, watch = _held_out(tmp_path)
    base = np.full_like(p, like.mean())
    target = np.log1p(watch)
    for seed in (0, 1, 2):
        _run(tmp_path, "ranking", "control", seed,
             {"predictions": np.stack([base, np.full_like(p, target.mean())], 1)})
    for seed in (0, 1):  # seed 2 of the treatment never finished
        _run(tmp_path, "ranking", "linear", seed,
             {"predictions": np.stack([p, target + 0.1], 1)})
    doc = write_tables(tmp_path, replicates=200)
    r = doc["ranking"]
    assert r["seeds"] == [0, 1]  # only seeds every model finished are paired
    like_delta = r["deltas"]["linear"]["like/ne"]
    assert like_delta["high"] < 0 and like_delta["low"] <= like_delta["estimate"]
    assert r["deltas"]["linear"]["average_binary_ne"] == like_delta["estimate"]
    assert r["deltas"]["linear"]["watch_time/mse"]["estimate"] < 0
    text = (tmp_path / "results.md").read_text()
    assert "| linear | " in text and "**" in text  # the excluded-zero interval is bold
    assert json.loads((tmp_path / "results.json").read_text())["ranking"]["seeds"] == [0, 1]


def test_hit_rate_deltas_need_enough_control_hits(tmp_path):
    _held_out(tmp_path)
    labels = np.load(tmp_path / "held_out.npz")["labels"]
    q = int((labels[:, 0] > 0.5).sum())
    rng = np.random.default_rng(1)
    rare = np.zeros(q, bool)
    rare[:3] = True
    common = rng.random(q) < 0.3
    for seed in (0, 1, 2):
        _run(tmp_path, "retrieval", "control", seed,
             {"hits/like/1": rare, "hits/like/10": common}, ["like"], ["binary"])
        _run(tmp_path, "retrieval", "gatenet", seed,
             {"hits/like/1": rare | (rng.random(q) < 0.01),
              "hits/like/10": common | (rng.random(q) < 0.2)}, ["like"], ["binary"])
    doc = write_tables(tmp_path, replicates=200)
    deltas = doc["retrieval"]["deltas"]["gatenet"]
    assert deltas["like/hr@1"]["control_hits"] == 3 < MIN_HITS
    assert deltas["like/hr@10"]["low"] > 0
    row = [line for line in markdown(doc).splitlines() if line.startswith("| gatenet |")][-1]
    assert "(3 hits)" in row and "**+" in row
    assert doc["retrieval"]["queries"] == {"like": q}
