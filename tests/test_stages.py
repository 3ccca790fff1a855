"""The folders follow the pipeline, and no module imports from a later stage.

data -> slices -> kernels -> model -> export -> stores -> downstream -> experiments ->
report, with the foundation modules (errors, console, durations, atomic_write, hookspecs,
plugins) below them all and the command line (and the pipeline that schedules the stages)
above. Imports inside functions count too: a lazy import is still a dependency. Imports
under ``if TYPE_CHECKING:`` do not run; they name types for annotations only (the hookspecs
name the types of every stage's hooks that way).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dv365"

# Lower stages first; a module may import from its own stage and earlier ones.
STAGES = (
    ("errors", "console", "durations", "atomic_write", "hookspecs", "plugins", "paths"),
    ("data",),
    ("slices",),
    ("kernels",),
    ("model",),
    ("export",),
    ("stores",),
    ("downstream",),
    ("experiments",),
    ("report",),
    ("pipeline",),
    ("cli",),
)
RANK = {name: i for i, names in enumerate(STAGES) for name in names}


def stage_of(module: str) -> str:
    """``dv365.kernels.plan`` -> ``kernels``; ``dv365.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every dv365 import in the file, relative ones resolved."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("dv365")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level)[0]
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.startswith("dv365"):
                if name == "dv365":  # from dv365 import kernels
                    out += [(node.lineno, f"dv365.{a.name}") for a in node.names]
                else:
                    out.append((node.lineno, name))
    return out


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
                  or p.parent != PACKAGE)


def test_every_package_has_a_stage():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in modules()}
    assert tops - {"__init__", "__main__"} <= set(RANK), "give the new package a stage here"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_later_stage(path):
    here = stage_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    later = [f"{path.name}:{line}: imports {name} ({stage_of(name)} comes after {here})"
             for line, name in imports_of(path)
             if RANK.get(stage_of(name), -1) > RANK.get(here, len(STAGES))]
    assert not later, "\n".join(later)


def test_the_rule_sees_lazy_relative_and_typing_imports(tmp_path, monkeypatch):
    fake = tmp_path / "dv365" / "kernels" / "plan.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from typing import TYPE_CHECKING\n"
                    "if TYPE_CHECKING:\n    from dv365.model import train\n"
                    "def f():\n    from ..model.train import Trainer\n"
                    "from . import codegen\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE",
                        tmp_path / "dv365")
    # the typing-only import is left out; the lazy relative one is resolved and caught
    assert sorted(imports_of(fake)) == [(5, "dv365.model.train"), (6, "dv365.kernels")]
    assert RANK[stage_of("dv365.model.train")] > RANK["kernels"]
