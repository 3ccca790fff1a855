"""The slice compiler's public API: spec text -> checked, elaborated :class:`SpecIR`; artifacts.

``compile_spec`` parses the main file and its includes, elaborates and checks everything, and
raises one :class:`~dv365.slices.errors.SpecError` with *all* problems found, or returns the
IR. Includes (``include "common.slice"``) resolve relative to the including file; a file
included twice is read once, and a cycle is an error.

A compiled artifact is the IR as JSON (``BUILD_DIR/<spec stem>.ir.json``).
:func:`write_artifact` never replaces a different artifact silently.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from dv365.atomic_write import write_text
from dv365.data.vocabulary import VocabLike, Vocabulary
from dv365.errors import DataError, NotFoundError, UsageError
from dv365.slices import ast
from dv365.slices.check import check, no_slices
from dv365.slices.elaborate import elaborate
from dv365.slices.errors import Diagnostic, Pos, SpecError
from dv365.slices.ir import SpecIR
from dv365.slices.language import MAX_INCLUDE_DEPTH
from dv365.slices.parse import parse, read_source

ARTIFACT_SUFFIX = ".ir.json"


class _Includes:
    """Loads included files relative to their includer; detects cycles, reads each once."""

    def __init__(self, root: Path | None):
        self.stack: list[Path] = [root.resolve()] if root is not None else []
        self.seen: set[Path] = set(self.stack)
        self.diagnostics: list[Diagnostic] = []
        self.sources: dict[str, str] = {}

    def leave(self, module: ast.Module) -> None:
        self.stack.pop()

    def enter(self, includer: str, stmt: ast.Include) -> ast.Module | None:
        base = Path(includer).parent if includer and not includer.startswith("<") else Path()
        target = (base / stmt.path)
        try:
            resolved = target.resolve()
        except (OSError, RuntimeError, ValueError):
            resolved = target
        if resolved in self.stack:
            chain = " -> ".join(p.name for p in self.stack[self.stack.index(resolved):])
            self.diagnostics.append(Diagnostic(stmt.pos, f"include cycle: {chain} -> "
                                               f"{resolved.name}"))
            return None
        if resolved in self.seen:
            return None
        if len(self.stack) >= MAX_INCLUDE_DEPTH:
            self.diagnostics.append(Diagnostic(stmt.pos, "includes nested too deeply"))
            return None
        if not target.is_file():
            self.diagnostics.append(Diagnostic(stmt.pos, f"included file {str(target)!r} "
                                               "does not exist"))
            return None
        self.seen.add(resolved)
        try:
            module = parse(read_source(target), str(target))
        except SpecError as exc:
            self.diagnostics.extend(exc.diagnostics)
            self.sources.update(exc.sources)
            return None
        self.stack.append(resolved)
        return module


def compile_spec(source: str | bytes | Path, *, vocab: VocabLike | None = None,
                 path_for_messages: str | None = None) -> SpecIR:
    """Compile a spec (its text or bytes, or a :class:`~pathlib.Path` to read) to a checked IR.

    ``vocab`` (a :class:`~dv365.data.vocabulary.Vocabulary`, a ``DatasetMeta`` or a mapping;
    default: the generator's vocabulary) is what enumerated values are checked against and
    is recorded in ``SpecIR.vocab``.
    """
    root: Path | None = None
    if isinstance(source, Path):
        root = source
        path = path_for_messages or str(source)
        if not source.is_file():
            raise NotFoundError(f"spec file {str(source)!r} does not exist", where=str(source))
        data: bytes | str = read_source(source)
    else:
        path = path_for_messages or "<spec>"
        data = source
        if path_for_messages and not path_for_messages.startswith("<"):
            root = Path(path_for_messages)
    module = parse(data, path)
    includes = _Includes(root)
    elaborated = elaborate(module, Vocabulary.of(vocab).as_dict(), loader=includes)
    diagnostics = list(includes.diagnostics) + list(elaborated.diagnostics)
    sources = {**elaborated.sources, **includes.sources}
    complete = not diagnostics
    diagnostics += check(elaborated, complete)
    if complete and not elaborated.slices and not diagnostics:
        diagnostics.append(no_slices(path))
    if diagnostics:
        raise SpecError(diagnostics, sources)
    try:
        return SpecIR(
            gap_ms=elaborated.gap_ms, tables=elaborated.tables, slices=elaborated.slices,
            origins={n: str(o.name) for n, o in elaborated.slice_origins.items()},
            vocab=elaborated.vocab)
    except ValidationError as exc:  # pragma: no cover - the checks above prevent it
        raise SpecError([Diagnostic(Pos(path, 1, 1), f"invalid spec: {exc.errors()[0]['msg']}")],
                        sources) from None


def artifact_path(spec_path: str | Path, build_dir: str | Path) -> Path:
    """``BUILD_DIR/<spec stem>.ir.json``."""
    return Path(build_dir) / (Path(spec_path).stem + ARTIFACT_SUFFIX)


def write_artifact(ir: SpecIR, path: str | Path, force: bool = False,
                   name: str | None = None) -> Path:
    """Write ``ir`` as JSON atomically; returns the file written.

    ``path`` is the file (``....json``) or a build folder, in which the file is
    ``<name>.ir.json`` (``name`` defaults to the first 12 digits of the content hash). An
    existing file with the same content is left alone; a different one is replaced only with
    ``force`` (else :class:`~dv365.errors.UsageError`).
    """
    path = Path(path)
    if path.suffix != ".json":
        path = path / f"{name or ir.content_hash()[:12]}{ARTIFACT_SUFFIX}"
    text = ir.to_json() + "\n"
    if path.exists():
        try:
            old = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            old = None
        if old == text:
            return path
        if not force:
            raise UsageError(f"{path} holds a different compiled spec", where=str(path),
                             hint="pass --force to replace it, or -o another build folder")
    try:
        write_text(path, text)
    except OSError as exc:
        raise UsageError(f"cannot write the compiled spec: {exc.strerror or exc}",
                         where=str(path.parent), hint="pick another build folder with -o"
                         ) from None
    return path


def load_artifact(path: str | Path) -> SpecIR:
    """Read a compiled spec written by :func:`write_artifact`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(f"compiled spec {str(path)!r} does not exist", where=str(path),
                            hint="run dv365 compile SPEC first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read compiled spec: {exc}", where=str(path)) from None
    try:
        return SpecIR.from_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise DataError(f"not a compiled slice spec: {first['msg']}",
                        where=f"{path}:{loc}" if loc else str(path),
                        hint="recompile it with dv365 compile") from None
