"""The slice compiler's public API: spec text -> checked, elaborated :class:`SpecIR`; artifacts.

``compile_spec`` parses the main file and its includes, elaborates and checks everything, and
raises one :class:`~dv365.slices.errors.SpecError` with *all* problems found, or returns the
IR. Includes (``include "common.slice"``) resolve relative to the including file; a file
included twice is read once, and a cycle is an error.

A compiled artifact is the IR as JSON (``BUILD_DIR/<spec stem>.ir.json``).
:func:`write_artifact` never replaces a different artifact silently. :func:`load_spec` reads
either kind of spec file against the data's vocabulary: a spec is compiled against it, an
artifact is refused when it uses a value the data does not declare (:func:`require_values`).

Paths in messages are spelled by :func:`~dv365.paths.display_path`.
"""

from __future__ import annotations

import errno
import stat
from pathlib import Path

from pydantic import ValidationError

from dv365.atomic_write import write_text
from dv365.data.schema import VOCAB_COLUMNS
from dv365.data.vocabulary import VocabLike, Vocabulary
from dv365.errors import DataError, NotFoundError, UsageError
from dv365.paths import display_path
from dv365.slices import ast
from dv365.slices.check import check, no_slices
from dv365.slices.elaborate import elaborate
from dv365.slices.errors import Diagnostic, Pos, SpecError
from dv365.slices.ir import SpecIR
from dv365.slices.language import MAX_INCLUDE_DEPTH
from dv365.slices.parse import parse, read_source

ARTIFACT_SUFFIX = ".ir.json"
_DOES_NOT_EXIST = "does not exist"


def _not_a_spec_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a spec file (it does not exist, is a folder, has a
    name too long for the OS, ...), or None when it is a regular file."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return _DOES_NOT_EXIST
    except ValueError:  # a NUL byte in the name
        return "is not a valid file name"
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return "has a name too long for the file system"
        return f"cannot be read: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "is a folder, not a spec file"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    return None


class _Includes:
    """Loads included files relative to their includer; detects cycles, reads each once."""

    def __init__(self, root: Path | None):
        self.stack: list[Path] = [root.resolve()] if root is not None else []
        self.seen: set[Path] = set(self.stack)
        self.diagnostics: list[Diagnostic] = []
        self.sources: dict[str, str] = {}
        # The tokens of the files read so far: all of them share one limit.
        self.tokens = 0

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
        problem = _not_a_spec_file(target)
        if problem is not None:
            self.diagnostics.append(Diagnostic(stmt.pos, f"included file "
                                               f"{display_path(target)!r} {problem}"))
            return None
        self.seen.add(resolved)
        try:
            module = parse(read_source(target), display_path(target), tokens_before=self.tokens)
        except SpecError as exc:
            self.diagnostics.extend(exc.diagnostics)
            self.sources.update(exc.sources)
            return None
        self.tokens += module.tokens
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
        path = path_for_messages or display_path(source)
        problem = _not_a_spec_file(source)
        if problem == _DOES_NOT_EXIST:
            raise NotFoundError(f"spec file {path!r} {problem}", where=path)
        if problem is not None:
            raise UsageError(f"spec {path!r} {problem}", where=path,
                             hint="give a slice spec file (.slice)")
        data: bytes | str = read_source(source)
    else:
        path = path_for_messages or "<spec>"
        data = source
        if path_for_messages and not path_for_messages.startswith("<"):
            root = Path(path_for_messages)
    module = parse(data, path)
    includes = _Includes(root)
    includes.tokens = module.tokens
    elaborated = elaborate(module, Vocabulary.of(vocab).as_dict(), loader=includes)
    diagnostics = list(includes.diagnostics) + list(elaborated.diagnostics)
    sources = {**elaborated.sources, **includes.sources}
    complete = not diagnostics
    diagnostics += check(elaborated, complete)
    if complete and not elaborated.slices and not diagnostics:
        diagnostics.append(no_slices(path))
    if diagnostics:
        raise SpecError(diagnostics, sources)
    shown_paths = {p: display_path(p) for p in {o.name.path
                                                for o in elaborated.slice_origins.values()}}
    try:
        return SpecIR(
            gap_ms=elaborated.gap_ms, tables=elaborated.tables, slices=elaborated.slices,
            origins={n: o.name.shown_in(shown_paths[o.name.path])
                     for n, o in elaborated.slice_origins.items()},
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
    shown = display_path(path)
    try:
        is_dir, exists = path.is_dir(), path.exists()
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise UsageError(f"{display_path(folder)} is a file, not a build folder",
                             where=display_path(folder), hint="pick another build folder with -o")
    except OSError as exc:  # e.g. a name too long for the file system
        raise _cannot_write(exc, shown) from None
    if is_dir:
        raise UsageError(f"{shown} is a folder, not a compiled spec file", where=shown,
                         hint="remove it or pick another build folder with -o")
    if exists:
        try:
            old = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            old = None
        if old == text:
            return path
        if not force:
            raise UsageError(f"{shown} holds a different compiled spec", where=shown,
                             hint="pass --force to replace it, or -o another build folder")
    try:
        write_text(path, text)
    except OSError as exc:
        raise _cannot_write(exc, display_path(path.parent)) from None
    return path


def _cannot_write(exc: OSError, where: str) -> UsageError:
    return UsageError(f"cannot write the compiled spec: {exc.strerror or exc}", where=where,
                      hint="pick another build folder with -o")


def load_artifact(path: str | Path) -> SpecIR:
    """Read a compiled spec written by :func:`write_artifact`."""
    path = Path(path)
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(f"compiled spec {shown!r} does not exist", where=shown,
                            hint="run dv365 compile SPEC first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read compiled spec: {exc}", where=shown) from None
    try:
        return SpecIR.from_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise DataError(f"not a compiled slice spec: {first['msg']}",
                        where=f"{shown}:{loc}" if loc else shown,
                        hint="recompile it with dv365 compile") from None


def load_spec(path: str | Path, vocab: VocabLike | None = None) -> SpecIR:
    """The IR of a spec file: a slice spec compiled against ``vocab`` (the data's; default:
    the generator's vocabulary), or a compiled IR (``.json``) as written, which is refused
    when it uses an enumerated value that ``vocab`` (when given) does not declare."""
    path = Path(path)
    if path.suffix != ".json":
        return compile_spec(path, vocab=vocab)
    ir = load_artifact(path)
    if vocab is not None:
        require_values(ir, vocab, where=display_path(path))
    return ir


def enum_values(ir: SpecIR) -> list[tuple[str, str, str]]:
    """``(slice, column, value)`` for every enumerated value the slices' filters name, in
    slice order (``timeline`` is not an enumerated value of the data)."""
    out: list[tuple[str, str, str]] = []

    def walk(pred, slice_name: str) -> None:
        if pred.kind in ("and", "or"):
            for arg in pred.args:
                walk(arg, slice_name)
        elif pred.kind == "member" and pred.field in VOCAB_COLUMNS:
            out.extend((slice_name, pred.field, str(v)) for v in pred.values)

    for slice_ in ir.slices:
        walk(slice_.predicate, slice_.name)
    return out


def require_values(ir: SpecIR, vocab: VocabLike, *, where: str) -> None:
    """A :class:`~dv365.errors.DataError` at ``where`` (the spec file) for the first value
    the IR's filters name that ``vocab`` does not declare: the IR was compiled against
    another vocabulary, and its filters would not mean what they say on this data."""
    bound = Vocabulary.of(vocab)
    for slice_name, column, value in enum_values(ir):
        if value not in bound.values(column):
            raise DataError(
                f"slice {slice_name!r} filters on {column} {value!r}, which the data does not "
                "declare: the IR was compiled against another vocabulary", where=where,
                hint="give the .slice spec, which is compiled against the data's vocabulary, "
                     "or recompile it with dv365 compile SPEC --data DATA")
