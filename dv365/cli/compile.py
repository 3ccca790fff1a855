"""``dv365 compile``: check a slice spec, write its IR artifact, summarize what it computes.

Enumerated values (``action == dislike``) are checked against the vocabulary of ``--data``'s
events, or without it against the generator's default vocabulary; a value unknown there gets
a hint that ``--data DATA`` binds the data's vocabulary.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from dv365.console import stdout
from dv365.paths import display_path

DATA_HINT = ("checked against the generator's default vocabulary; --data DATA binds the data's "
             "vocabulary")


def events_vocab(data: Path):
    """The vocabulary declared by the events dataset of a data folder (its first file)."""
    from dv365.data.folder import dataset_files, locate
    from dv365.data.metadata import read_meta
    from dv365.errors import DataError

    folder = locate(data)
    if folder.events is None:
        raise DataError("no events dataset here", where=str(data),
                        hint="pass a data folder holding events/ (e.g. from dv365 synth)")
    return read_meta(dataset_files(folder.events)[0])


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def summary_lines(ir, artifact: Path | None) -> list[str]:
    """The compile summary: counts per timeline, table, pooling and window; output size."""
    from dv365.durations import duration_text

    slices = ir.slices
    by_timeline = Counter(s.timeline for s in slices)
    by_pooling = Counter(s.pooling for s in slices)
    by_window = Counter("all" if s.window_ms is None else duration_text(s.window_ms)
                        for s in slices)
    weighted = sum(s.weight is not None for s in slices)
    dims = sorted({t.dim for t in ir.tables})
    dim = dims[0] if len(dims) == 1 else None
    lines = [f"{len(slices)} slices, {len(ir.tables)} tables, gap {duration_text(ir.gap_ms)}"
             f"{f', dim {dim}' if dim else ''}"]
    lines.append("  timelines: " + ", ".join(f"{k} {v}" for k, v in sorted(by_timeline.items())))
    lines.append("  pooling:   " + ", ".join(f"{k} {v}" for k, v in sorted(by_pooling.items()))
                 + f" ({weighted} weighted)")
    lines.append("  windows:   " + ", ".join(f"{k} {v}" for k, v in by_window.items()))
    lines.append("  tables:")
    width = max(len(t.name) for t in ir.tables)
    for t in ir.tables:
        hashing = t.hashing.kind + (f"({t.hashing.seed})" if t.hashing.kind == "hash" else "")
        lines.append(f"    {t.name:<{width}}  {len(ir.slices_of_table(t.name)):>4} slices  "
                     f"{t.id_column:<9}  {t.num_rows:>12,} rows x {t.dim}  {hashing}  "
                     f"({_size(t.num_rows * t.dim * 4)} fp32)")
    if dim:
        per_user = len(slices) * dim * 4
        lines.append(f"  pooled output per user: {len(slices)} x {dim} x 4 B = {_size(per_user)}"
                     f" (1M users: {_size(per_user * 1e6)})")
    if artifact is not None:
        lines.append(f"wrote {display_path(artifact)} (IR {ir.content_hash()[:12]})")
    return lines


def with_data_hint(error):
    """``error`` (a :class:`~dv365.slices.errors.SpecError` of a spec compiled against the
    default vocabulary) with :data:`DATA_HINT` added to each unknown enumerated value."""
    from dv365.data.schema import VOCAB_COLUMNS
    from dv365.slices.errors import SpecError

    unknown_value = re.compile(rf"unknown ({'|'.join(VOCAB_COLUMNS)}) '")

    def hinted(diagnostic):
        if not unknown_value.match(diagnostic.message):
            return diagnostic
        hint = diagnostic.hint or ""
        joined = f"{hint} {DATA_HINT}" if hint.endswith("?") else \
            f"{hint}; {DATA_HINT}" if hint else DATA_HINT
        return dataclasses.replace(diagnostic, hint=joined)

    diagnostics = [hinted(d) for d in error.diagnostics]
    if diagnostics == list(error.diagnostics):
        return error
    return SpecError(diagnostics, error.sources)


def compile_command(
    spec: Path = typer.Argument(..., help="The slice spec file (.slice)."),
    out: Path = typer.Option(Path("build"), "-o", "--out",
                             help="Build folder; the IR goes to OUT/<spec stem>.ir.json."),
    explain: bool = typer.Option(False, "--explain", help="List every slice in plain words."),
    force: bool = typer.Option(False, "--force", help="Replace a different existing artifact."),
    data: Optional[Path] = typer.Option(
        None, "--data", help="Check enum values against this data folder's declared vocab "
        "(default: the generator's vocabulary); train does so with its config's data."),
) -> None:
    """Check a slice spec, write its compiled IR and summarize it (exit 2 on spec errors)."""
    from dv365.slices.compile import artifact_path, compile_spec, write_artifact
    from dv365.slices.errors import SpecError
    from dv365.slices.printer import describe

    vocab = events_vocab(Path(display_path(data))) if data is not None else None
    try:
        ir = compile_spec(Path(display_path(spec)), vocab=vocab)
    except SpecError as exc:
        if vocab is not None:
            raise
        raise with_data_hint(exc) from None
    artifact = write_artifact(ir, artifact_path(spec, Path(display_path(out))), force=force)
    for line in summary_lines(ir, artifact):
        stdout.print(line, highlight=False, markup=False, soft_wrap=True)
    if explain:
        width = max(len(s.name) for s in ir.slices)
        for s in ir.slices:
            stdout.print(f"{s.name:<{width}}  {describe(s, ir.gap_ms)}", highlight=False,
                         markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_command)
