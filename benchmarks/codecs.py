"""Codecs: int4 encode and decode throughput (fbgemm against the torch twin), reconstruction
error and compression.

For D = 64 and 256 and ``--rows`` vectors a user (58, the paper's outputs): ``--users`` users of
random normal vectors, encoded and decoded by

* ``fbgemm``: ``torch.ops.fbgemm`` on the CPU (what ``Int4Codec`` runs there);
* ``twin``: :func:`dv365.export.codecs.int4.quantize_rows` / ``dequantize_rows``, on the CPU and,
  when CUDA is available, on the GPU (what ``Int4Codec`` runs there);
* ``codec``: ``Int4Codec.encode`` / ``decode`` on each device, the range check included.

Each is the median of ``--repeats`` timed calls after one warm-up, given as rows/s and as GB/s
of float32 vectors (the encoder's output read by encode, written by decode); GPU timings
synchronize. The twin's bytes are checked against fbgemm's in the same run. Error: relative L2
(``||x - decode(encode(x))|| / ||x||`` over the batch) and the largest absolute error, int4 and
fp16. Compression: fp32 payload bytes over int4 payload bytes, and the same for whole records
(payload + 4-byte checksum). Prints one JSON document (and writes it with ``--out``).

    python -m benchmarks codecs --users 500 --repeats 5
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._timing import emit, median_seconds  # noqa: E402
from dv365.export.codecs.floats import Fp16Codec, Fp32Codec  # noqa: E402
from dv365.export.codecs.int4 import (Int4Codec, dequantize_rows, quantize_rows,  # noqa: E402
                                      row_size)
from dv365.export.records import record_size  # noqa: E402


def _timed(fn, repeats: int, device: torch.device) -> float:
    def call():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()

    call()  # warm-up (fbgemm's dispatch, CUDA kernels' first launch)
    return median_seconds(call, repeats)


def _rate(seconds: float, rows: int, dim: int) -> dict:
    return {"seconds": round(seconds, 6), "rows_per_s": round(rows / seconds),
            "fp32_gb_per_s": round(rows * dim * 4 / seconds / 1e9, 3)}


def _fbgemm():
    try:
        importlib.import_module("fbgemm_gpu")  # registers torch.ops.fbgemm
    except ImportError:
        return None
    return torch.ops.fbgemm


def _throughput(vectors: torch.Tensor, repeats: int, devices: list[torch.device]) -> dict:
    users, per_user, dim = vectors.shape
    rows = users * per_user
    flat = vectors.reshape(rows, dim)
    codec = Int4Codec()
    out: dict = {}
    ops = _fbgemm()
    if ops is not None:
        fused = ops.FloatToFusedNBitRowwiseQuantizedSBHalf(flat, 4)
        out["fbgemm/cpu"] = {
            "encode": _rate(_timed(lambda: ops.FloatToFusedNBitRowwiseQuantizedSBHalf(flat, 4),
                                   repeats, flat.device), rows, dim),
            "decode": _rate(_timed(lambda: ops.FusedNBitRowwiseQuantizedSBHalfToFloat(fused, 4),
                                   repeats, flat.device), rows, dim),
        }
    reference = codec.encode(vectors)
    for device in devices:
        on = flat.to(device)
        fused = quantize_rows(on)
        payloads = reference.to(device)
        batch = vectors.to(device)
        same = bool(torch.equal(fused.reshape(users, -1).cpu(), reference))
        out[f"twin/{device.type}"] = {
            "encode": _rate(_timed(lambda: quantize_rows(on), repeats, device), rows, dim),
            "decode": _rate(_timed(lambda: dequantize_rows(fused, dim), repeats, device), rows,
                            dim),
            "bytes_equal_to_codec_on_cpu": same,
        }
        out[f"codec/{device.type}"] = {
            "encode": _rate(_timed(lambda: codec.encode(batch), repeats, device), rows, dim),
            "decode": _rate(_timed(lambda: codec.decode(payloads, per_user, dim), repeats,
                                   device), rows, dim),
        }
    return out


def _error(vectors: torch.Tensor, codec) -> dict:
    _, per_user, dim = vectors.shape
    decoded = codec.decode(codec.encode(vectors), per_user, dim)
    diff = (decoded - vectors).double()
    return {"relative_l2": float(diff.norm() / vectors.double().norm()),
            "max_abs": float(diff.abs().max())}


def run(users: int, per_user: int, dims: list[int], repeats: int, seed: int) -> dict:
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    generator = torch.Generator().manual_seed(seed)
    results = []
    for dim in dims:
        vectors = torch.randn(users, per_user, dim, generator=generator)
        fp32 = Fp32Codec().payload_size(per_user, dim)
        int4 = Int4Codec().payload_size(per_user, dim)
        results.append({
            "dim": dim, "users": users, "rows_per_user": per_user, "int4_row_bytes": row_size(dim),
            "payload_bytes": {"fp32": fp32, "fp16": Fp16Codec().payload_size(per_user, dim),
                              "int4": int4},
            "compression_vs_fp32": {"payload": round(fp32 / int4, 3),
                                    "record": round(record_size(fp32) / record_size(int4), 3)},
            "error": {"int4": _error(vectors, Int4Codec()), "fp16": _error(vectors, Fp16Codec())},
            "throughput": _throughput(vectors, repeats, devices),
        })
    return {
        "benchmark": "codecs",
        "command": "python -m benchmarks codecs " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                    "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "repeats": repeats, "results": results,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--rows", type=int, default=58, help="vectors a user")
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    report = run(args.users, args.rows, args.dims, args.repeats, args.seed)
    emit(report, args.out)


if __name__ == "__main__":
    main()
