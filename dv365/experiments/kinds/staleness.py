"""``staleness``: how stale the embedding may get.

One downstream model (per seed) trains reading a store refreshed every day (each request
reads the snapshot exported, incrementally, at the start of its day), and is evaluated on
the held-out days twice: **refreshed** (each day's snapshot) and **frozen** (the snapshot of
the held-out start, whatever the day). The document's axis is the held-out day (the frozen
embedding is that many days old at its end): per day, each serving's NE deltas over the
control, and the cosine similarity of a user's frozen embedding with the one exported that
many days later (mean over users; the low and high ends are the 10th and 90th
percentiles). The bar: on the last day the frozen embedding keeps at least ``bar`` of the
refreshed gain (the paper: about flat over 7 days, cosine above 0.9).
"""

from __future__ import annotations

import numpy as np

from dv365.experiments.experiment import (
    Arm, Experiment, Outcome, Setting, bar, document, estimate, percent, series)

ARM = "daily"


def cosine(a: np.ndarray, b: np.ndarray) -> dict[str, float] | None:
    """Mean and 10th/90th percentiles of the rows' cosine similarity (users with a zero
    vector left out)."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    ok = (na > 0) & (nb > 0)
    if not ok.any():
        return None
    c = np.sum(a[ok] * b[ok], axis=1) / (na[ok] * nb[ok])
    return {"estimate": float(c.mean()), "low": float(np.quantile(c, 0.1)),
            "high": float(np.quantile(c, 0.9))}


class Staleness(Experiment):
    kind = "staleness"
    title = "How stale it may get"
    question = ("Served frozen from the held-out start, does the embedding keep the gain "
                "of one refreshed every day?")

    def arms(self, setting: Setting) -> list[Arm]:
        return [Arm(ARM, train_serving="daily", eval_serving=("daily", "held_out_start"))]

    def document(self, outcome: Outcome) -> dict:
        days = list(range(1, outcome.setting.eval_days + 1))
        frozen_vectors = outcome.vectors(ARM, 0)
        points, rows = [], []
        gains: dict[str, float | None] = {}
        for day in days:
            refreshed = outcome.deltas(ARM, "ranking", serving=0, day=day)
            frozen = outcome.deltas(ARM, "ranking", serving=1, day=day)
            later = outcome.vectors(ARM, day)
            similarity = (cosine(frozen_vectors, later)
                          if frozen_vectors is not None and later is not None else None)
            if frozen is not None and similarity is not None:
                frozen = {**frozen, "cosine": similarity}
            points.append(series("refreshed", refreshed, x=day))
            points.append(series("frozen", frozen, x=day))
            gains = {"refreshed": estimate(refreshed), "frozen": estimate(frozen)}
            rows.append({"arm": f"day {day}",
                         "refreshed NE delta": percent(gains["refreshed"]),
                         "frozen NE delta": percent(gains["frozen"]),
                         "cosine (frozen vs that day)":
                             None if similarity is None else round(similarity["estimate"], 4)})
        # gains hold the last day's estimates (a gain is a negative NE delta)
        kept = None
        if gains.get("refreshed") is not None and gains.get("frozen") is not None \
                and gains["refreshed"] < 0:
            kept = gains["frozen"] / gains["refreshed"]
        checks = [bar(f"the frozen embedding keeps >= {100 * self.options.bar:.0f}% of the "
                      f"refreshed gain on day {days[-1]}",
                      None if kept is None else kept >= self.options.bar,
                      "-" if kept is None else f"{100 * kept:.0f}%")]
        last_cos = rows[-1]["cosine (frozen vs that day)"] if rows else None
        if last_cos is not None:
            checks.append(bar(f"a user's embedding keeps cosine > {self.options.cosine} "
                              f"after {days[-1]} days", last_cos > self.options.cosine,
                              f"{last_cos:.3f}"))
        if kept is None:
            reading = ("The share of the gain kept is not defined: the refreshed model "
                       "shows no gain on the last day." if gains.get("refreshed") is not None
                       else "Not decided: the runs are missing.")
        else:
            reading = (f"On day {days[-1]} the frozen embedding keeps {100 * kept:.0f}% of "
                       f"the refreshed gain ({percent(gains['frozen'])} vs "
                       f"{percent(gains['refreshed'])} average NE)"
                       + (f"; a user's embedding keeps cosine {last_cos:.3f} with the one "
                          f"exported {days[-1]} days later." if last_cos is not None else "."))
        return document(self, outcome, series=points,
                        axis={"label": "held-out day (days since the frozen export)",
                              "values": [float(d) for d in days]},
                        columns=["refreshed NE delta", "frozen NE delta",
                                 "cosine (frozen vs that day)"],
                        table=rows, bars=checks, reading=reading)
