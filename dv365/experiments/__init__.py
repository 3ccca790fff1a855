"""Experiment tools: how a trained model is judged, apart from how it is trained.

The comparisons of docs/results.md (``scripts/model_comparison.py``, later ``dv365 eval``)
are built from these:

* :mod:`dv365.experiments.probe`: linear probes of the exported user embedding (does it carry
  a known per-user label?) and its spread across users;
* :mod:`dv365.experiments.bootstrap`: paired bootstrap intervals of NE differences between
  two models on the same held-out examples.

This stage reads trained models and their predictions; nothing in training or export imports
from it.
"""
