"""The built-in backbones, registered as a default plugin: ``dlrm`` and ``siamese``."""

from __future__ import annotations

from dv365.hookspecs import RegisterBackbone, hookimpl
from dv365.model.backbones.options import BackboneInputs, DLRMOptions, SiameseOptions


def _dlrm(options: DLRMOptions, *, inputs: BackboneInputs):
    from dv365.model.backbones.dlrm import DLRM

    return DLRM(options, inputs=inputs)


def _siamese(options: SiameseOptions, *, inputs: BackboneInputs):
    from dv365.model.backbones.siamese import Siamese

    return Siamese(options, inputs=inputs)


@hookimpl
def dv365_register_backbones(register: RegisterBackbone) -> None:
    register("dlrm", _dlrm, options=DLRMOptions,
             doc="multi-task DLRM (torchrec dense/interaction/over arch), the paper's backbone")
    register("siamese", _siamese, options=SiameseOptions,
             doc="two-tower backbone, the alternative the paper compared")
