"""Slice compiler speed: `compile_spec` on the shipped reels spec (205 slices), by stage.

Run: ``.venv/bin/python -m benchmarks compile [--repeats R]``.

Stages, each timed R times (median): the Lark LALR parse of the text into a parse tree
(the baseline, run in the same process: what any Lark-based front end pays at least), the
parse into the typed AST, the full ``compile_spec`` (parse, generator/window expansion,
lowering, checks, IR construction), ``print_spec`` and recompiling the printed spec (205 flat
slice statements, no generators).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dv365.slices.compile import compile_spec
from dv365.slices.grammar import parser
from dv365.slices.parse import parse
from dv365.slices.printer import print_spec
from benchmarks._timing import median_seconds

SPEC = Path(__file__).resolve().parents[1] / "slices" / "reels.slice"


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--repeats", type=int, default=15)
    repeats = args.parse_args().repeats
    text = SPEC.read_text()
    ir = compile_spec(text)
    printed = print_spec(ir)
    rows = [
        ("Lark parse tree (baseline)", median_seconds(lambda: parser().parse(text), repeats)),
        ("parse to typed AST", median_seconds(lambda: parse(text), repeats)),
        ("compile_spec (all stages)", median_seconds(lambda: compile_spec(text), repeats)),
        ("print_spec", median_seconds(lambda: print_spec(ir), repeats)),
        ("compile printed spec", median_seconds(lambda: compile_spec(printed), repeats)),
    ]
    base = rows[0][1]
    print(f"reels.slice: {len(text):,} bytes, {len(ir.slices)} slices; printed "
          f"{len(printed):,} bytes; medians of {repeats}")
    print("| stage | median | vs Lark parse |")
    print("|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e3:.1f} ms | {seconds / base:.1f}x |")


if __name__ == "__main__":
    main()
