"""The CUDA generator's shared rules: dims per block and per thread."""

from __future__ import annotations

from dv365.kernels import cuda_source


def test_dims_per_block_divides_the_dim(monkeypatch):
    for dim in (2, 16, 64, 96, 100, 128, 256, 384, 512):
        db = cuda_source.dims_per_block(dim)
        assert dim % db == 0 and db <= cuda_source.CUDA_ENTRY_DIMS_PER_BLOCK
    assert cuda_source.dims_per_block(256) == 256  # the entries kernel: one block
    assert cuda_source.dims_per_block(384) == 192  # whole warps before the largest divisor
    monkeypatch.setattr(cuda_source, "CUDA_FUSED_DESIGN", "dense")
    for dim in (2, 16, 64, 96, 100, 128, 256, 384):
        db = cuda_source.dims_per_block(dim)
        assert dim % db == 0 and db <= cuda_source.CUDA_DIMS_PER_BLOCK
    assert cuda_source.dims_per_block(256) == 64
    assert cuda_source.dims_per_block(96) == 32
    assert cuda_source.dims_per_block(100) == 50
