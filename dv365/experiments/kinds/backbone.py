"""``backbone``: which backbone to train the foundation model in, judged downstream.

Each backbone of the options trains its own foundation model (the paper compares DLRM with
a Siamese network); each snapshot feeds the ranking control (NE) and the retrieval control
(Hit Rate), through the configured adapters.
"""

from __future__ import annotations

import math

from dv365.experiments.eval_tables import MIN_HITS
from dv365.experiments.experiment import (
    Arm, Experiment, Outcome, Setting, document, estimate, percent, series)


class Backbone(Experiment):
    kind = "backbone"
    title = "Which backbone"
    question = ("Does the foundation model trained in a DLRM backbone or in a Siamese "
                "network give the better embedding downstream, for ranking and retrieval?")

    def arms(self, setting: Setting) -> list[Arm]:
        base = setting.foundation.get("backbone") or {"type": "dlrm"}
        adapters = {"ranking": self.options.ranking_adapter}
        if self.options.retrieval_adapter is not None:
            adapters["retrieval"] = self.options.retrieval_adapter
        out = []
        for section in self.options.backbones:
            # The configured backbone of that type, options and all, is the foundation
            # already trained; another type replaces the whole section.
            same = section.type == base.get("type") and not section.options
            override = {} if same else {"backbone": {"type": section.type, **section.options}}
            out.append(Arm(section.type, foundation=override, adapters=adapters))
        return out

    def document(self, outcome: Outcome) -> dict:
        points, rows = [], []
        for section in self.options.backbones:
            arm = section.type
            ranking = outcome.deltas(arm, "ranking")
            points.append(series(arm, ranking, label=f"{arm} (ranking)"))
            row = {"arm": arm, "average NE delta": percent(estimate(ranking))}
            if self.options.retrieval_adapter is not None:
                retrieval = outcome.deltas(arm, "retrieval")
                points.append(series(arm, retrieval, family="retrieval",
                                     label=f"{arm} (retrieval)"))
                # A delta whose control found too few targets is noise, not a rate.
                hr = [v["estimate"] for k, v in (retrieval or {}).items()
                      if "/hr@" in k and v.get("estimate") is not None
                      and math.isfinite(v["estimate"])
                      and (v.get("control_hits") or 0) >= MIN_HITS]
                row["mean HR delta"] = percent(sum(hr) / len(hr) if hr else None)
            rows.append(row)
        done = [r for r in rows if r["average NE delta"] != "-"]
        reading = ("; ".join(f"{r['arm']}: average NE {r['average NE delta']}"
                             + (f", mean HR {r['mean HR delta']}" if "mean HR delta" in r
                                else "") for r in done) or "No arm finished.")
        return document(self, outcome, series=points,
                        columns=[c for c in ("average NE delta", "mean HR delta")
                                 if any(c in r for r in rows)], table=rows, reading=reading)
