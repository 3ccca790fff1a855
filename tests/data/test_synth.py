"""The long-history generator (`dv365 synth`): what the default data promises.

Each test generates real Parquet into a temporary folder and reads it back; a few small data
sets are shared per module to keep the whole file fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from dv365.cli import app as cli_app
from dv365.data.schema import DatasetMeta, events_schema, examples_schema
from dv365.data.synth import (
    DAY_MS,
    PERIOD_END_MS,
    PERIOD_START_MS,
    SynthConfig,
    World,
    _draw_users,
    synthesize,
)
from dv365.data.validate import validate_dataset
from dv365.errors import UsageError

SMALL = dict(users=300, seed=7, mean_events=400, max_events=1_500, examples_per_user=16)


def _read(folder: Path, kind: str):
    return ds.dataset(folder / kind, format="parquet").to_table()


def _digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "small"
    synthesize(out, SynthConfig(**SMALL))
    return out


@pytest.fixture(scope="module")
def long_histories(tmp_path_factory) -> Path:
    """Histories long enough that 200 events are a couple of weeks, as at paper scale."""
    out = tmp_path_factory.mktemp("synth") / "long"
    synthesize(out, SynthConfig(users=150, seed=11, mean_events=15_000, max_events=40_000,
                                examples_per_user=96))
    return out


# ----------------------------------------------------------------------------- determinism

def test_same_arguments_give_the_same_bytes(small, tmp_path):
    again = tmp_path / "again"
    synthesize(again, SynthConfig(**SMALL))
    assert _digest(again) == _digest(small)


def test_another_seed_gives_other_data(small, tmp_path):
    other = tmp_path / "other"
    synthesize(other, SynthConfig(**(SMALL | {"seed": 8})))
    a, b = _read(small, "events"), _read(other, "events")
    assert a.num_rows != b.num_rows or not a.equals(b)


def test_how_events_are_stored_does_not_change_them(small, tmp_path):
    """Smaller files (more chunks) and another codec give the same rows in the same order."""
    stored = tmp_path / "stored"
    synthesize(stored, SynthConfig(**SMALL), rows_per_file=10_000, compression="zstd")
    assert len(list((stored / "events").glob("*.parquet"))) > 1
    assert _read(stored, "events").equals(_read(small, "events"))


# ----------------------------------------------------------------------------- shape of the data

def test_files_read_back_with_the_declared_schema_and_validate(small):
    for kind, schema_of in (("events", events_schema), ("examples", examples_schema)):
        for file in sorted((small / kind).glob("*.parquet")):
            schema = pq.read_schema(file)
            meta = DatasetMeta.from_schema(schema)
            assert meta is not None and meta.kind == kind
            assert schema.equals(schema_of(meta), check_metadata=True)
        _, report = validate_dataset(small / kind, kind)
        assert report.ok, [str(p) for p in report.problems()]
    meta = DatasetMeta.from_schema(pq.read_schema(next((small / "examples").glob("*.parquet"))))
    assert set(meta.tasks) == {"like", "comment", "share", "save", "follow", "complete", "skip",
                               "profile_visit", "watch_time"}
    assert meta.tasks["watch_time"] == "regression" and len(meta.dense) >= 3


def test_events_are_sorted_by_user_then_time_within_the_year(small):
    t = _read(small, "events")
    user = t["user_id"].to_numpy()
    ts = t["ts"].cast("int64").to_numpy()
    assert np.all(np.diff(user) >= 0)
    same = np.diff(user) == 0
    assert np.all(np.diff(ts)[same] >= 0)
    assert ts.min() >= PERIOD_START_MS and ts.max() <= PERIOD_END_MS
    # spread over the year, not bunched at one end
    assert np.percentile(ts, 10) < PERIOD_START_MS + 60 * DAY_MS
    assert np.percentile(ts, 90) > PERIOD_END_MS - 60 * DAY_MS


def test_timelines_media_types_and_surfaces(small):
    t = _read(small, "events").to_pydict()
    timeline = np.array(t["timeline"])
    media = np.array(t["media_type"])
    explicit = timeline == "explicit"
    assert 0.20 < explicit.mean() < 0.30  # about 3:1 implicit to explicit
    action = np.array(t["action"], dtype=object)
    assert all(a is not None for a in action[explicit])
    assert all(a is None for a in action[~explicit])
    dwell = np.array(t["dwell_time"], dtype=float)
    assert not np.isnan(dwell[~explicit]).any() and (dwell[~explicit] >= 0).all()
    duration = np.array(t["video_duration"], dtype=float)
    assert np.isnan(duration[media == "photo"]).all()
    assert not np.isnan(duration[media == "video"]).any()
    assert {"video", "photo", "carousel"} <= set(media)
    assert len(set(t["surface"])) >= 4
    # likes are the most common explicit action
    values, counts = np.unique(action[explicit].astype(str), return_counts=True)
    assert values[np.argmax(counts)] == "like"


def test_reactions_depend_on_video_duration(small):
    t = _read(small, "events").to_pydict()
    duration = np.array(t["video_duration"], dtype=float)
    dwell = np.array(t["dwell_time"], dtype=float)
    explicit = np.array(t["timeline"]) == "explicit"
    short, long_ = duration < 20, duration > 240
    assert explicit[short].mean() > explicit[long_].mean()  # more actions on short videos
    implicit = ~explicit
    assert np.median(dwell[long_ & implicit]) > np.median(dwell[short & implicit])
    ratio = dwell / duration
    assert np.mean(ratio[short & implicit] >= 1) > np.mean(ratio[long_ & implicit] >= 1)


def test_popularity_is_heavily_skewed(small):
    t = _read(small, "events")
    for column in ("media_id", "author_id"):
        counts = np.sort(np.bincount(t[column].to_numpy()))[::-1]
        counts = counts[counts > 0]
        top = counts[: max(1, len(counts) // 100)].sum() / counts.sum()
        assert top > 0.10, f"top 1% of {column}s get only {top:.1%} of events"


def test_history_lengths_match_mean_and_cap():
    config = SynthConfig(users=4_000, seed=3, mean_events=40_000, max_events=70_000).resolved()
    world = World.build(config)
    lengths = _draw_users(world, np.random.default_rng(0),
                          np.arange(config.users, dtype=np.int64)).n_events
    assert abs(lengths.mean() / 40_000 - 1) < 0.03
    assert lengths.max() <= 70_000 and lengths.min() >= 1
    assert (lengths == 70_000).mean() > 0.01  # the cap binds, as at the paper's scale


def test_paper_profile_targets():
    config = SynthConfig(users=1, profile="paper").resolved()
    assert (config.mean_events, config.max_events) == (40_000, 70_000)


def test_written_history_lengths(small):
    users = pq.read_table(small / "truth" / "users.parquet")
    n = users["n_events"].to_numpy()
    assert abs(n.mean() / SMALL["mean_events"] - 1) < 0.08
    assert n.max() <= SMALL["max_events"]
    per_user = np.bincount(_read(small, "events")["user_id"].to_numpy())
    assert np.array_equal(per_user, n)


def test_examples_cover_the_final_days(small):
    ex = _read(small, "examples")
    ts = ex["request_ts"].cast("int64").to_numpy()
    assert ts.min() >= PERIOD_END_MS - 28 * DAY_MS and ts.max() < PERIOD_END_MS
    days = np.unique((PERIOD_END_MS - ts) // DAY_MS)
    assert len(days) >= 21  # enough days for train/validation/test and a 7-day staleness gap
    assert ex.num_rows == SMALL["users"] * SMALL["examples_per_user"]
    for task in ("like", "complete", "skip"):
        rate = ex[f"label_{task}"].to_numpy().mean()
        assert 0 < rate < 1, task


def test_truth_is_saved(small):
    params = json.loads((small / "truth" / "params.json").read_text())
    assert params["config"]["seed"] == SMALL["seed"]
    assert params["period"]["end_ms"] == PERIOD_END_MS
    users = pq.read_table(small / "truth" / "users.parquet").to_pylist()
    assert len(users) == SMALL["users"]
    assert all(1 <= len(u["stable_topics"]) <= 6 and len(u["favourite_authors"]) == 8
               for u in users)
    bursts = pq.read_table(small / "truth" / "bursts.parquet")
    assert bursts.num_rows >= SMALL["users"] * 365 / 7


# ----------------------------------------------------------------------------- interests

def _auc(score: np.ndarray, label: np.ndarray) -> float:
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    # average ranks over ties
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    pos = label.astype(bool)
    n1, n0 = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _topic_share_features(folder: Path, recent: int) -> dict[str, np.ndarray]:
    """For each example: the share of the user's events before the request that are on the
    target's topic, over the whole history and over the last ``recent`` events."""
    ev = _read(folder, "events")
    ex = _read(folder, "examples")
    user = ev["user_id"].to_numpy()
    ts = ev["ts"].cast("int64").to_numpy()
    topic = ev["topic_id"].to_numpy()
    n_topics = int(max(topic.max(), ex["topic_id"].to_numpy().max())) + 1
    eu = ex["user_id"].to_numpy()
    ets = ex["request_ts"].cast("int64").to_numpy()
    et = ex["topic_id"].to_numpy()
    shift = 1 << 41  # ms within the period fit in 41 bits
    end = np.searchsorted(user * shift + (ts - PERIOD_START_MS), eu * shift + (ets - PERIOD_START_MS))
    start = np.searchsorted(user, eu)
    # events ordered by (user, topic, position) so a count in a position range is 2 searches
    pos = np.arange(len(user), dtype=np.int64)
    key = (user * n_topics + topic) * (1 << 32) + pos
    key.sort()
    base = (eu * n_topics + et) * (1 << 32)

    def share(lo: np.ndarray) -> np.ndarray:
        hits = np.searchsorted(key, base + end) - np.searchsorted(key, base + lo)
        return hits / np.maximum(end - lo, 1)

    return {"whole": share(start), "recent": share(np.maximum(start, end - recent))}


def _planted_affinity(folder: Path) -> np.ndarray:
    ex = _read(folder, "examples")
    truth = pq.read_table(folder / "truth" / "users.parquet").to_pydict()
    lookup = {(u, t): a for u, ts_, as_ in zip(truth["user_id"], truth["stable_topics"],
                                               truth["stable_affinity"])
              for t, a in zip(ts_, as_)}
    return np.array([lookup.get((u, t), 0.0) for u, t in
                     zip(ex["user_id"].to_pylist(), ex["topic_id"].to_pylist())])


def test_labels_depend_on_the_planted_stable_interest(long_histories):
    ex = _read(long_histories, "examples")
    planted = _planted_affinity(long_histories)
    assert 0.05 < (planted > 0).mean() < 0.5
    for task, floor in (("like", 0.70), ("complete", 0.60)):
        assert _auc(planted, ex[f"label_{task}"].to_numpy()) > floor, task
    watch = np.log1p(ex["label_watch_time"].to_numpy())
    assert np.corrcoef(planted, watch)[0, 1] > 0.15


def test_whole_history_predicts_labels_better_than_the_last_200_events(long_histories):
    ex = _read(long_histories, "examples")
    features = _topic_share_features(long_histories, recent=200)
    # measured: like 0.660 vs 0.579, comment 0.691 vs 0.591, complete 0.586 vs 0.553
    for task, margin in (("like", 0.05), ("comment", 0.03), ("complete", 0.02)):
        label = ex[f"label_{task}"].to_numpy()
        whole, recent = _auc(features["whole"], label), _auc(features["recent"], label)
        assert whole > recent + margin, f"{task}: whole {whole:.3f} vs last 200 {recent:.3f}"


def test_recent_events_are_dominated_by_bursts_not_stable_interests(long_histories):
    ev = _read(long_histories, "events")
    truth = pq.read_table(long_histories / "truth" / "users.parquet").to_pydict()
    bursts = pq.read_table(long_histories / "truth" / "bursts.parquet")
    user = ev["user_id"].to_numpy()
    ts = ev["ts"].cast("int64").to_numpy()
    topic = ev["topic_id"].to_numpy()
    b_user = bursts["user_id"].to_numpy()
    b_start = bursts["start"].cast("int64").to_numpy()
    b_end = bursts["end"].cast("int64").to_numpy()
    b_topic = bursts["topic_id"].to_numpy()
    starts = np.searchsorted(user, np.arange(len(truth["user_id"])))
    ends = np.searchsorted(user, np.arange(len(truth["user_id"])), side="right")
    stable_recent, burst_recent, stable_year = [], [], []
    for u, stable in zip(truth["user_id"], truth["stable_topics"]):
        lo, hi = starts[u], ends[u]
        last = slice(max(lo, hi - 200), hi)
        stable_set = np.isin(topic[lo:hi], stable)
        stable_year.append(stable_set.mean())
        stable_recent.append(np.isin(topic[last], stable).mean())
        mine = b_user == u
        w = np.searchsorted(b_start[mine], ts[last], side="right") - 1
        in_burst = (w >= 0) & (ts[last] < b_end[mine][np.maximum(w, 0)])
        burst_recent.append((in_burst & (topic[last] == b_topic[mine][np.maximum(w, 0)])).mean())
    # measured: bursts 52% of the last 200 events, stable topics 18% (19% over the year)
    assert np.mean(burst_recent) > 2 * np.mean(stable_recent)
    assert np.mean(stable_recent) < 0.35 and np.mean(stable_year) < 0.35


# ----------------------------------------------------------------------------- the command

@pytest.mark.parametrize("args, where", [
    (["--users", "0"], "--users"),
    (["--users", "5", "--mean-events", "0"], "--mean-events"),
    (["--users", "5", "--mean-events", "100", "--max-events", "50"], "--max-events"),
    (["--users", "5", "--days", "0"], "--days"),
    (["--users", "5", "--profile", "huge"], "--profile"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args, where):
    out = tmp_path / "out"
    assert cli_app.main(["synth", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{where}: error:") and "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_app.main(["synth", str(out), "--users", "3", "--mean-events", "50"]) == 0
    before = _digest(out)
    assert cli_app.main(["synth", str(out), "--users", "4", "--mean-events", "50"]) == 2
    assert "--force" in capsys.readouterr().err
    assert _digest(out) == before
    assert cli_app.main(["synth", str(out), "--users", "4", "--mean-events", "50",
                         "--force"]) == 0
    assert pq.read_table(out / "truth" / "users.parquet").num_rows == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_config_errors_name_the_option():
    with pytest.raises(UsageError) as info:
        SynthConfig(users=1, mean_events=10, max_events=5).resolved()
    assert info.value.where == "--max-events"


def test_a_failing_writer_stops_the_run_and_leaves_nothing(tmp_path, monkeypatch):
    import dv365.data.synth as synth

    monkeypatch.setattr(synth, "BLOCK_EVENTS", 2_000)  # many blocks, more than buffer sets
    calls = {"n": 0}
    real_write = synth.DatasetWriter.write

    def write(self, data):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError("disk full")
        real_write(self, data)

    monkeypatch.setattr(synth.DatasetWriter, "write", write)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        synthesize(out, SynthConfig(**SMALL))
    assert not out.exists() and not list(tmp_path.iterdir())
