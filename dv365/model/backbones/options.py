"""Settings of the built-in backbones and what every backbone is built from.

Torch-free, like :mod:`dv365.model.encoders.options`, so that the registries stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from dv365.model.tasks import Task


@dataclass(frozen=True)
class ItemFeature:
    """A sparse feature of the target item (or request) looked up in its own table."""

    name: str
    num_rows: int


@dataclass(frozen=True)
class BackboneInputs:
    """What a backbone's factory is told about its inputs.

    ``user_vectors`` (U) vectors of ``user_dim`` (D) come from the encoder; ``U = 0`` builds
    the backbone without the user tower (the control of the paper's comparisons).
    """

    user_vectors: int
    user_dim: int
    item_features: tuple[ItemFeature, ...]
    num_dense: int
    tasks: tuple["Task", ...]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DLRMOptions(_Options):
    """Multi-task DLRM: dense arch, pairwise dot interaction, over arch with one output per task."""

    embedding_dim: int = Field(default=16, gt=0,
                               description="item table width = interaction width")
    dense_layers: tuple[int, ...] = Field(default=(32,),
                                          description="hidden widths of the dense arch")
    over_layers: tuple[int, ...] = Field(default=(64, 32),
                                         description="hidden widths of the over arch")


class SiameseOptions(_Options):
    """Two towers (user + context, item) whose per-task vectors meet in a dot product."""

    embedding_dim: int = Field(default=16, gt=0)
    tower_layers: tuple[int, ...] = Field(default=(64,))
    task_dim: int = Field(default=16, gt=0, description="width of each task's tower output")
