"""``encoder_ablation``: which encoder compresses the slices best (the paper's encoder table).

Each encoder of the options trains its own foundation model; each model's snapshot feeds
the ranking control through the linear adapter. The document gives every arm's NE deltas
over the control per task, and a table of the encoder's parameters, the foundation's
training examples/s and the average NE delta.
"""

from __future__ import annotations

from dv365.experiments.experiment import (
    Arm, Experiment, Outcome, Setting, document, estimate, percent, series)


def encoder_label(section) -> str:
    """``lce/token``, ``identity``: the type and, when given, its view."""
    view = section.options.get("view")
    return f"{section.type}/{view}" if view else section.type


class EncoderAblation(Experiment):
    kind = "encoder_ablation"
    title = "Which encoder"
    question = ("Token-wise or dim-wise LCE, MLP, transformer or FSA, or no compression: "
                "which foundation encoder helps the downstream ranker most?")

    def arms(self, setting: Setting) -> list[Arm]:
        return [Arm(encoder_label(s), foundation={"encoder": {"type": s.type, **s.options}})
                for s in self.options.encoders]

    def document(self, outcome: Outcome) -> dict:
        rows, points = [], []
        for arm in (encoder_label(s) for s in self.options.encoders):
            deltas = outcome.deltas(arm, "ranking")
            points.append(series(arm, deltas))
            info = outcome.foundation(arm) or {}
            rows.append({"arm": arm, "encoder parameters": info.get("encoder_parameters"),
                         "foundation examples/s": info.get("examples_per_s"),
                         "average NE delta": percent(estimate(deltas))})
        averages = {arm: estimate(p["metrics"]) for arm, p in
                    ((encoder_label(s), p) for s, p in zip(self.options.encoders, points))
                    if p is not None}
        ranked = sorted((a for a, v in averages.items() if v is not None),
                        key=lambda a: averages[a])
        reading = (f"{ranked[0]} gives the lowest average NE delta over the control "
                   f"({percent(averages[ranked[0]])}), {ranked[-1]} the highest "
                   f"({percent(averages[ranked[-1]])})." if ranked else "No arm finished.")
        return document(self, outcome, series=points,
                        columns=["encoder parameters", "foundation examples/s",
                                 "average NE delta"], table=rows, reading=reading)
