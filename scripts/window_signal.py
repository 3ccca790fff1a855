"""How much of a user's stable interest the last K events already show, against the whole
history: the evidence docs/results.md ("Downstream") reads the DV365 gain against.

For every user of a generated dataset (dv365 synth writes the planted truth), at time T (the
export time of an evaluation), the topic most frequent in (a) the last K events before T
and (b) all events before T is compared with the user's planted top stable topic
(truth/users.parquet); also the share of the window's events that belong to any stable
topic of the user, and to the user's burst active at T; and how often the top stable topic
is among the window's 5 most frequent topics (truth/bursts.parquet).

    .venv/bin/python scripts/window_signal.py build/paper-4000 --at 2025-12-18 --k 500,2000
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone

import numpy as np
import pyarrow.parquet as pq

from dv365.data.timeline import TimelineStore
from dv365.kernels.recent import recent_events


def window_topics(store: TimelineStore, at_ms: int, k: int | None) -> tuple[np.ndarray, ...]:
    """Per user (store order): offsets and topic ids of the last k events before at_ms
    (all of them for k None)."""
    users = np.arange(store.num_users)
    k = int(store.history_lengths().max()) if k is None else k
    events = recent_events(store, users, np.full(len(users), at_ms), k, ("topic_id",))
    return events.offsets, events.columns["topic_id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--at", required=True, help="T, a UTC date or time")
    parser.add_argument("--k", default="100,500,2000")
    args = parser.parse_args()
    at = datetime.fromisoformat(args.at).replace(tzinfo=timezone.utc)
    at_ms = int(at.timestamp() * 1000)
    store = TimelineStore.open(f"{args.data}/events")
    truth = pq.read_table(f"{args.data}/truth/users.parquet").to_pydict()
    index = store.user_indices(np.asarray(truth["user_id"]))
    top = np.array([t[int(np.argmax(a))] for t, a in zip(truth["stable_topics"],
                                                         truth["stable_affinity"])])
    stable = [set(t) for t in truth["stable_topics"]]
    bursts = pq.read_table(f"{args.data}/truth/bursts.parquet").to_pydict()
    active: dict[int, int] = {}
    for user, start, end, topic in zip(bursts["user_id"], bursts["start"], bursts["end"],
                                       bursts["topic_id"]):
        if start.timestamp() * 1000 <= at_ms < end.timestamp() * 1000:
            active[int(user)] = int(topic)
    report = {"data": args.data, "at": args.at, "users": len(top), "windows": {}}
    for k in [int(x) for x in args.k.split(",")] + [None]:
        offsets, topics = window_topics(store, at_ms, k)
        hits, top5, stable_share, burst_share, lengths = [], [], [], [], []
        for row, u in enumerate(index):
            window = topics[offsets[u]:offsets[u + 1]]
            lengths.append(len(window))
            if len(window) == 0:
                hits.append(False)
                top5.append(False)
                continue
            values, counts = np.unique(window, return_counts=True)
            order = values[np.argsort(-counts, kind="stable")]
            hits.append(order[0] == top[row])
            top5.append(top[row] in order[:5])
            stable_share.append(np.isin(window, list(stable[row])).mean())
            b = active.get(int(truth["user_id"][row]))
            burst_share.append(float((window == b).mean()) if b is not None else 0.0)
        report["windows"]["all" if k is None else str(k)] = {
            "mean_events": float(np.mean(lengths)),
            "top_stable_topic_is_most_frequent": float(np.mean(hits)),
            "top_stable_topic_in_5_most_frequent": float(np.mean(top5)),
            "stable_topics_share": float(np.mean(stable_share)),
            "active_burst_share": float(np.mean(burst_share))}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
