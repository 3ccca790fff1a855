"""``history_length``: what long history buys.

One foundation model; its snapshot at T exported from each user's N most recent events
only, for each N of the options (``null``: all of them). The document's axis is N (the
whole history drawn at the most events any user has), with the average NE delta over the
control at each.
"""

from __future__ import annotations

from dv365.experiments.experiment import (
    Arm, Experiment, Outcome, Setting, document, estimate, percent, series)


def length_label(n: int | None) -> str:
    return "all" if n is None else f"{n}"


class HistoryLength(Experiment):
    kind = "history_length"
    title = "What long history buys"
    question = "How much of the gain over the control comes from long history: the " \
               "embedding of each user's last N events, for growing N?"

    def lengths(self, setting: Setting) -> list[int | None]:
        """The limits run: a limit at or past the longest history is the whole history
        again, so it is left out; the whole history is always run."""
        out = [n for n in self.options.lengths if n is None or n < setting.max_history]
        return out if None in out else [*out, None]

    def arms(self, setting: Setting) -> list[Arm]:
        return [Arm(length_label(n), history=n) for n in self.lengths(setting)]

    def document(self, outcome: Outcome) -> dict:
        longest = outcome.setting.max_history
        lengths = self.lengths(outcome.setting)
        points, rows = [], []
        for n in lengths:
            deltas = outcome.deltas(length_label(n), "ranking")
            x = float(longest if n is None else n)
            points.append(series(length_label(n), deltas, x=x,
                                 label=f"last {length_label(n)} events"))
            rows.append({"arm": length_label(n), "events": int(x),
                         "average NE delta": percent(estimate(deltas))})
        dropped = [n for n in self.options.lengths if n is not None and n not in lengths]
        reading = "; ".join(f"last {r['arm']}: {r['average NE delta']}" for r in rows)
        if dropped:
            reading += (f". Limits {', '.join(map(str, dropped))} are not run: no user has "
                        f"more than {longest:,} events before T.")
        return document(self, outcome, series=points,
                        axis={"label": "events the embedding saw (most recent)",
                              "values": [float(longest if n is None else n)
                                         for n in lengths], "log": True},
                        columns=["events", "average NE delta"], table=rows, reading=reading)
