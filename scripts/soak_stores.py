"""Soak a store: SIGKILL a publisher many times while reader processes read.

The same code as tests/stores/test_crash.py (tests/stores/crash.py), run longer::

    python scripts/soak_stores.py --uri lmdb://build/soak --kills 200
    python scripts/soak_stores.py --uri redis://localhost:6379/15 --kills 200

Prints the counts (kills, publishes, resumed staged versions, post-kill checks, reader
batches, torn batches, reader errors, corrupt records) as JSON and exits 1 when any batch
was torn, any check failed or the final publish did not succeed. Without --uri it soaks a
fresh LMDB store in a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.stores.crash import crash_run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", help="the store to soak (default: a temporary lmdb://)")
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--shard-size", type=int, default=50)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--max-wait", type=float, default=0.4,
                        help="longest a publisher runs before its kill, seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dv365-soak-") as tmp:
        uri = args.uri or f"lmdb://{tmp}/store"
        report = crash_run(uri, kills=args.kills, users=args.users,
                           shard_size=args.shard_size, readers=args.readers,
                           max_wait_s=args.max_wait, seed=args.seed, stop_dir=tmp)
    print(report.to_json())
    ok = (not report.torn and not report.broken and not report.problems
          and report.final_publish)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
