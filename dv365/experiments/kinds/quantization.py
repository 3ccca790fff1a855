"""``quantization``: what storing the embedding in fewer bits costs downstream.

One foundation model; its snapshot at T stored by each codec. The document gives each
codec's NE deltas over the control, its bytes per user, its reconstruction error against
the reference codec's vectors (the mean over users of ``|v - v_ref| / |v_ref|``), and the
bar: the first codec (int4) costs less than ``bar`` relative NE against the reference,
paired over users.
"""

from __future__ import annotations

import numpy as np

from dv365.experiments.experiment import (
    Arm, Experiment, Outcome, Setting, bar, document, estimate, percent, series)


class Quantization(Experiment):
    kind = "quantization"
    title = "What 4 bits cost"
    question = "Does a snapshot stored in int4 (or fp16) cost downstream NE against fp32?"

    def arms(self, setting: Setting) -> list[Arm]:
        codecs = list(self.options.codecs)
        if self.options.reference not in codecs:
            codecs.append(self.options.reference)
        return [Arm(c, codec=c) for c in codecs]

    def document(self, outcome: Outcome) -> dict:
        reference = self.options.reference
        ref_vectors = outcome.vectors(reference)
        points, rows = [], []
        for codec in self.options.codecs:
            points.append(series(codec, outcome.deltas(codec, "ranking")))
            snap = outcome.snapshot(codec) or {}
            error = None
            vectors = outcome.vectors(codec)
            if vectors is not None and ref_vectors is not None:
                norm = np.linalg.norm(ref_vectors, axis=1)
                ok = norm > 0
                error = float(np.mean(np.linalg.norm(vectors - ref_vectors, axis=1)[ok]
                                      / norm[ok]))
            rows.append({"arm": codec,
                         "bytes per user": (snap["bytes"] // snap["users"]
                                            if snap.get("users") else None),
                         "reconstruction error": error,
                         "NE vs reference": percent(estimate(outcome.deltas(
                             codec, "ranking", against=reference)))
                         if codec != reference else "-"})
        first = self.options.codecs[0]
        cost = estimate(outcome.deltas(first, "ranking", against=reference)) \
            if first != reference else None
        passed = None if cost is None else cost < self.options.bar
        checks = [bar(f"{first} costs < {100 * self.options.bar:.2f}% NE against "
                      f"{reference}", passed, percent(cost))]
        reading = ("Not decided: the runs are missing." if cost is None else
                   f"{first} changes the average NE by {percent(cost)} against {reference}"
                   f" ({'within' if passed else 'outside'} the "
                   f"{100 * self.options.bar:.2f}% bar).")
        return document(self, outcome, series=points,
                        columns=["bytes per user", "reconstruction error", "NE vs reference"],
                        table=rows, bars=checks, reading=reading)
