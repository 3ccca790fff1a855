"""Settings of the built-in experiment kinds (an ``experiments:`` entry of an eval config).

Kept free of torch, like every plugin's options, so building the registries stays cheap.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dv365.model.config import PluginSection


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _distinct(values: tuple) -> tuple:
    if len(set(values)) != len(values):
        raise ValueError("a value repeats")
    return values


class EncoderAblationOptions(_Options):
    """The paper's encoder table: each encoder of the list trains its own foundation model
    (the eval config's ``foundation.train`` with this ``encoder:``)."""

    encoders: tuple[PluginSection, ...] = Field(default=(
        PluginSection(type="lce", view="token"), PluginSection(type="lce", view="dim"),
        PluginSection(type="mlp", view="token"), PluginSection(type="mlp", view="dim"),
        PluginSection(type="transformer", view="token"),
        PluginSection(type="transformer", view="dim"),
        PluginSection(type="fsa", view="token"), PluginSection(type="fsa", view="dim"),
        PluginSection(type="identity")), min_length=1)


class BackboneOptions(_Options):
    """Foundation backbones compared downstream, on ranking and on retrieval."""

    backbones: tuple[PluginSection, ...] = Field(
        default=(PluginSection(type="dlrm"), PluginSection(type="siamese")), min_length=2)
    ranking_adapter: PluginSection = PluginSection(type="linear")
    retrieval_adapter: PluginSection | None = PluginSection(type="linear")


class QuantizationOptions(_Options):
    """One foundation, its snapshot stored by each codec; ``reference`` is the codec the
    others are compared with (bytes, reconstruction error, NE)."""

    codecs: tuple[str, ...] = ("int4", "fp16", "fp32")
    reference: str = "fp32"
    bar: float = Field(default=0.0005, gt=0,
                       description="the most relative NE the first codec may cost")

    _unique = field_validator("codecs")(_distinct)


class StalenessOptions(_Options):
    """One downstream model trained on a store refreshed every day, evaluated on the
    held-out days twice: refreshed daily, and frozen at the held-out start."""

    bar: float = Field(default=0.8, gt=0, le=1,
                       description="the share of the refreshed gain the frozen embedding "
                                   "must keep on the last day")
    cosine: float = Field(default=0.9, ge=-1, le=1,
                          description="the paper's bound on a user's cosine similarity "
                                      "across the held-out days")


class HistoryLengthOptions(_Options):
    """The embedding computed from each user's N most recent events only, for each N
    (``null``: all of them)."""

    lengths: tuple[Annotated[int, Field(ge=1)] | None, ...] = Field(
        default=(1000, 5000, 20000, None), min_length=1)

    _unique = field_validator("lengths")(_distinct)


class GapOptions(_Options):
    """Foundation models trained with each distant-interest gap (hours)."""

    hours: tuple[Annotated[float, Field(ge=0, le=24 * 30)], ...] = Field(
        default=(0.0, 24.0), min_length=2)

    _unique = field_validator("hours")(_distinct)
