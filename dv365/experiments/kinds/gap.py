"""``gap``: the distant-interest gap the foundation model trains and exports with.

One foundation model per gap (``gap_hours`` of the training config); each snapshot at T
feeds the ranking control through the linear adapter. The paper's choice is 24h: the
embedding then cannot duplicate what the recent-events model sees.
"""

from __future__ import annotations

from dv365.experiments.experiment import (
    Arm, Experiment, Outcome, Setting, document, estimate, percent, series)


def gap_label(hours: float) -> str:
    return f"gap {hours:g}h"


class Gap(Experiment):
    kind = "gap"
    title = "The distant-interest gap"
    question = "Does the 24h gap (the paper's choice) give a better downstream embedding " \
               "than no gap?"

    def arms(self, setting: Setting) -> list[Arm]:
        base = setting.foundation.get("gap_hours")
        return [Arm(gap_label(h), foundation={} if base == h else {"gap_hours": h})
                for h in self.options.hours]

    def document(self, outcome: Outcome) -> dict:
        points, rows = [], []
        for hours in self.options.hours:
            deltas = outcome.deltas(gap_label(hours), "ranking")
            points.append(series(gap_label(hours), deltas))
            rows.append({"arm": gap_label(hours), "average NE delta":
                         percent(estimate(deltas))})
        reading = "; ".join(f"{r['arm']}: average NE {r['average NE delta']}" for r in rows)
        return document(self, outcome, series=points, columns=["average NE delta"],
                        table=rows, reading=reading)
