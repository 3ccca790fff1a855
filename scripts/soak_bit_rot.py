"""Soak the reader with bit rot: single-bit flips in an events file, read as dv365 reads it.

The same code as the bit-flip test of tests/data/test_validate.py (tests/data/bit_rot.py),
run longer::

    python scripts/soak_bit_rot.py --flips 5000

For each codec (the generator's uncompressed events and zstd) it flips one bit at ``--flips``
random positions of a fresh small events file and prints the counts (tried, clean, refused
with a located error, refused without a location, silently changed, internal error) as JSON;
exits 1 when any flip was unlocated, changed or internal.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.data.bit_rot import flip_run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=2000, help="flips per codec")
    parser.add_argument("--codecs", default="none,zstd")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report, ok = {}, True
    for codec in args.codecs.split(","):
        with tempfile.TemporaryDirectory(prefix="dv365-bit-rot-") as tmp:
            counts = flip_run(Path(tmp), codec, args.flips, seed=args.seed)
        report[codec] = counts.to_dict()
        ok &= counts.ok
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
