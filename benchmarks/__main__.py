"""``python -m benchmarks NAME [ARGS...]`` runs benchmarks/NAME.py; no NAME runs them all."""

from __future__ import annotations

import pkgutil
import runpy
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def run(name: str, args: list[str]) -> int:
    """Run one benchmark module as ``__main__``; its exit code."""
    saved = sys.argv
    sys.argv = [f"benchmarks.{name}", *args]
    try:
        runpy.run_module(f"benchmarks.{name}", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if isinstance(exc.code, str):  # sys.exit("message"): the interpreter would print it
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def main(argv: list[str]) -> int:
    names = available()
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print("available:", ", ".join(names))
        return 0
    if not argv:
        worst = 0
        for name in names:
            print(f"== {name}", flush=True)
            worst = max(worst, run(name, []))
        return worst
    if argv[0] not in names:
        print(f"error: no benchmark {argv[0]!r} (available: {', '.join(names)})", file=sys.stderr)
        return 2
    return run(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
