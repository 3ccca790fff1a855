"""Next-item prediction on MovieLens's shape: leave-one-out splits, full-catalogue ranking,
and HSTU learning an order that is there (and not one that is not)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from dv365.data.importers.movielens import import_movielens
from dv365.data.timeline import TimelineStore
from dv365.downstream.hstu_options import HstuOptions
from dv365.experiments.sequential import (
    evaluation_batch,
    item_sequences,
    ranking_metrics,
    run_movielens_check,
    training_batch,
)

torch.set_num_threads(1)
MOVIES = 200
CPU = torch.device("cpu")


def _write_cycle_release(folder: Path, *, users=100, seed=0) -> Path:
    """A ``ratings.dat`` + ``movies.dat`` release where every user walks the same fixed
    cycle of all movies from a random start for 10 to 30 ratings, an hour or less apart:
    the next movie is a function of the last one."""
    rng = np.random.default_rng(seed)
    cycle = rng.permutation(np.arange(1, MOVIES + 1))
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for user in range(1, users + 1):
        start, t = int(rng.integers(MOVIES)), 978_300_000 + int(rng.integers(10**6))
        for k in range(int(rng.integers(10, 31))):
            t += int(rng.integers(1, 3600))
            lines.append(f"{user}::{cycle[(start + k) % MOVIES]}::{rng.integers(1, 6)}::{t}")
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n")
    movies = [f"{m}::Movie {m} (2000)::Drama|Comedy" for m in range(1, MOVIES + 1)]
    (folder / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    return folder


@pytest.fixture(scope="module")
def cycle_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ml")
    import_movielens(_write_cycle_release(root / "release"), root / "data")
    return root


def _store(root: Path) -> TimelineStore:
    return TimelineStore.open(root / "data" / "events", cache_dir=root / "cache")


def test_sequences_keep_time_order_and_drop_short_users(tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    t = 978_300_000
    ratings = [(1, 30, 4, t + 300), (1, 10, 4, t + 100), (1, 20, 2, t + 200), (1, 40, 5, t + 400),
               (2, 10, 3, t + 50), (2, 20, 3, t + 60)]  # user 2 is too short to split
    (folder / "ratings.dat").write_text("".join(f"{u}::{m}::{r}::{t}\n"
                                                for u, m, r, t in ratings))
    import_movielens(folder, tmp_path / "data")
    seq = item_sequences(TimelineStore.open(tmp_path / "data" / "events",
                                            cache_dir=tmp_path / "cache"))
    assert seq.num_users == 1 and seq.catalogue.tolist() == [10, 20, 30, 40]
    assert seq.catalogue[seq.items].tolist() == [10, 20, 30, 40]
    assert seq.ts.tolist() == [(t + s) * 1000 for s in (100, 200, 300, 400)]


def test_shuffled_control_permutes_items_over_the_same_times(cycle_data):
    plain = item_sequences(_store(cycle_data))
    shuffled = item_sequences(_store(cycle_data), shuffle_within_users=True, seed=3)
    assert np.array_equal(plain.ts, shuffled.ts)
    assert not np.array_equal(plain.items, shuffled.items)
    for u in range(plain.num_users):
        s, e = plain.offsets[u], plain.offsets[u + 1]
        assert sorted(plain.items[s:e]) == sorted(shuffled.items[s:e])


def test_leave_one_out_targets(cycle_data):
    seq = item_sequences(_store(cycle_data))
    users = np.array([0, 5])
    n = np.diff(seq.offsets)[users]
    ends = seq.offsets[users + 1]
    test = evaluation_batch(seq, users, 1, 500, CPU)
    val = evaluation_batch(seq, users, 2, 500, CPU)
    assert test.targets.tolist() == seq.items[ends - 1].tolist()
    assert val.targets.tolist() == seq.items[ends - 2].tolist()
    assert test.query_ts.tolist() == seq.ts[ends - 1].tolist()
    assert (test.offsets.diff() == torch.as_tensor(n - 1)).all()
    assert (val.offsets.diff() == torch.as_tensor(n - 2)).all()
    train = training_batch(seq, users, 500, CPU)
    # Inputs are the training part but its last event; targets the events after them;
    # neither the validation nor the test target is ever trained on.
    assert (train.offsets.diff() == torch.as_tensor(n - 3)).all()
    first = seq.items[seq.offsets[0]:ends[0]]
    assert train.items[:n[0] - 3].tolist() == first[:-3].tolist()
    assert train.targets[:n[0] - 3].tolist() == first[1:-2].tolist()
    assert train.query_ts[0] == int(seq.ts[ends[0] - 3])
    short = training_batch(seq, users, 4, CPU)
    assert short.items[:4].tolist() == first[-7:-3].tolist()
    assert short.targets[:4].tolist() == first[-6:-2].tolist()


def test_ranking_metrics_by_hand():
    m = ranking_metrics(torch.tensor([1, 3, 11, 10]))
    assert m["hr@1"] == 0.25 and m["hr@10"] == 0.75
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(4) + 1 / np.log2(11)) / 4)


def test_hstu_learns_the_cycle_and_not_a_shuffled_order(cycle_data):
    options = HstuOptions(dim=16, layers=1, max_len=32)
    common = dict(options=options, epochs=30, seed=0, batch_size=32, learning_rate=1e-2,
                  input_dropout=0.0, patience=30, cache_dir=cycle_data / "cache")
    ordered = run_movielens_check(cycle_data / "data", **common)
    shuffled = run_movielens_check(cycle_data / "data", shuffle_within_users=True, **common)
    assert ordered["users"] == 100 and ordered["items"] == MOVIES
    assert ordered["chance_hr@10"] == pytest.approx(10 / MOVIES)
    # Chance is 0.05; a model that only learns which movies each user has seen (all the
    # shuffled order leaves) stays near 0.3.
    assert ordered["test_hr@10"] >= 0.9 and ordered["val_hr@10"] >= 0.9
    assert ordered["test_ndcg@10"] > 0.5
    assert shuffled["test_hr@10"] < ordered["test_hr@10"] - 0.4
    # Ranked among everything, the user's own last movies compete with the next one (the
    # residual keeps the current movie close); without the history, as the reference ranks,
    # the next movie is mostly first.
    unseen = run_movielens_check(cycle_data / "data", exclude_history=True, **common)
    assert unseen["test_hr@1"] >= 0.7 and unseen["test_hr@1"] >= ordered["test_hr@1"]
    assert ordered["train_examples_per_s"] > 0
    assert 0 <= ordered["best_epoch"] < ordered["epochs_run"] <= 30
