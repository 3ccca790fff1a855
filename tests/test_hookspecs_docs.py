"""Every hook is documented: a docstring in dv365/hookspecs.py and a section in docs/plugins.md."""

import inspect
from pathlib import Path

import pytest

from dv365 import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
               if name.startswith("dv365_"))


def test_there_are_hooks():
    assert "dv365_register_encoders" in HOOKS and len(HOOKS) >= 7


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_docstring(name):
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert len(doc.split()) >= 10, f"hookspec {name} has no real docstring"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_section_in_docs(name):
    assert f"### {name}\n" in DOCS.read_text(), f"docs/plugins.md has no '### {name}' section"
