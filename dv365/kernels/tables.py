"""Embedding tables as kernel arguments: fp32, fp16 or bf16, NumPy or torch, CPU or CUDA.

NumPy has no bfloat16 and Numba's CPU target no float16, so half tables travel as their
uint16 bits and the CPU kernels widen them through a 65536-entry float32 lookup table (exact:
every half value has one float32). CUDA kernels read fp16 natively and bf16 bits shifted
into a float32.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from dv365.kernels.checks import table_dtype_name


@lru_cache(maxsize=None)
def widening_lut(elem: str) -> np.ndarray:
    """float32 value of every uint16 bit pattern of an fp16 or bf16 number."""
    bits = np.arange(65536, dtype=np.uint32)
    if elem == "bf16":
        return (bits << np.uint32(16)).view(np.float32).copy()
    if elem == "f16":
        return bits.astype(np.uint16).view(np.float16).astype(np.float32)
    return np.zeros(1, np.float32)


def host_array(table: Any) -> np.ndarray:
    """A C-contiguous host array a CPU kernel can read (uint16 bits for half tables)."""
    name = table_dtype_name(table)
    if hasattr(table, "detach"):  # torch
        import torch

        t = table.detach().to("cpu").contiguous()
        if name == "bfloat16" or name == "float16":
            return t.view(torch.int16).numpy().view(np.uint16)
        return t.numpy()
    a = np.ascontiguousarray(table)
    return a.view(np.uint16) if name == "float16" else a


def to_float32(table: Any) -> np.ndarray:
    """The table widened to float32 on the host (reference paths and tests)."""
    if hasattr(table, "detach"):
        return table.detach().to("cpu").float().numpy()
    return np.asarray(table, dtype=np.float32)
