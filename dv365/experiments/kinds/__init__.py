"""The built-in experiment kinds of ``dv365 eval``, registered as a default plugin.

``encoder_ablation`` (the paper's encoder table), ``backbone`` (DLRM vs Siamese, judged
downstream), ``quantization`` (what int4 costs), ``staleness`` (a frozen embedding against one
refreshed daily), ``history_length`` (what long history buys) and ``gap`` (the 24h gap).
Their settings are in :mod:`dv365.experiments.kinds.options`; docs/experiments.md describes
each. The kinds' modules are imported only when an experiment is built.
"""

from __future__ import annotations

from dv365.experiments.kinds.options import (
    BackboneOptions,
    EncoderAblationOptions,
    GapOptions,
    HistoryLengthOptions,
    QuantizationOptions,
    StalenessOptions,
)
from dv365.hookspecs import ExperimentFactory, RegisterExperiment, hookimpl
from dv365.plugins import lazy_factory


def _lazy(module: str, cls: str) -> ExperimentFactory:
    """The kind class ``cls`` of this package's ``module``, imported only when an
    experiment is built."""
    return lazy_factory(f"{__name__}.{module}", cls)


@hookimpl
def dv365_register_experiments(register: RegisterExperiment) -> None:
    register("encoder_ablation", _lazy("encoder_ablation", "EncoderAblation"),
             options=EncoderAblationOptions,
             doc="token-wise vs dim-wise LCE, MLP, transformer, FSA and no compression")
    register("backbone", _lazy("backbone", "Backbone"), options=BackboneOptions,
             doc="foundation backbones (DLRM, Siamese) judged on ranking and retrieval")
    register("quantization", _lazy("quantization", "Quantization"),
             options=QuantizationOptions,
             doc="int4 vs fp16 vs fp32 snapshots: NE, bytes per user, reconstruction error")
    register("staleness", _lazy("staleness", "Staleness"), options=StalenessOptions,
             doc="an embedding frozen at the held-out start vs one refreshed daily")
    register("history_length", _lazy("history_length", "HistoryLength"),
             options=HistoryLengthOptions,
             doc="the gain over the control by how much history the embedding saw")
    register("gap", _lazy("gap", "Gap"), options=GapOptions,
             doc="distant-interest gaps (0 vs 24h) judged downstream")
