"""Name templates and the errors of names: ``{placeholder}`` substitution, unknown names.

A name written with placeholders (``{a}_{id}_{window}``) becomes a plain name here, in the
scope of the ``for`` variables (and the slice's ``{window}``) around it. Unknown names and
placeholders get the message and the "did you mean" hint that every pass shows for them.
"""

from __future__ import annotations

import re

from dv365.data.schema import ID_COLUMNS, VOCAB_COLUMNS
from dv365.slices import ast
from dv365.slices.errors import Pos, did_you_mean
from dv365.slices.language import FUNCTIONS, NUMERIC_FIELDS
from dv365.slices.passes.report import Reporter, Skip
from dv365.slices.passes.scopes import Definitions, Scope

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_template(node: ast.Name, scope: Scope, report: Reporter, naming: bool = False) -> str:
    """``node``'s name with its ``{placeholders}`` replaced.

    A placeholder standing alone where a name is *used* (``pool {id}``) is the loop value
    itself; inside a longer name, or where something is *named* (``naming``: slice and table
    names), it is the value's label (``[media = media_id]`` labels ``media_id`` as
    ``media``). An unknown placeholder is reported and raises :class:`Skip`.
    """
    if not node.is_template:
        return node.name
    whole = PLACEHOLDER.fullmatch(node.name)
    if whole and not naming:
        binding = scope.loop(whole.group(1))
        if binding is not None and isinstance(binding.value, ast.Name):
            return expand_template(binding.value, binding.scope, report)
        if binding is not None and isinstance(binding.value, ast.String):
            return binding.value.value

    def sub(match: re.Match) -> str:
        var = match.group(1)
        binding = scope.loop(var)
        if binding is None:
            raise unknown_placeholder(var, node.pos, scope, report)
        return binding.label

    return PLACEHOLDER.sub(sub, node.name)


def unknown_placeholder(var: str, pos: Pos, scope: Scope, report: Reporter) -> Skip:
    """Report ``{var}`` as unknown here, with the placeholders that are known."""
    known = scope.loop_names()
    hint = did_you_mean(var, known) or (
        f"placeholders here: {', '.join('{' + k + '}' for k in sorted(known))}" if known
        else "placeholders come from an enclosing for, and {window} from over")
    return report.fail(pos, f"unknown placeholder {{{var}}}", hint)


def unknown_name(name: str, pos: Pos, scope: Scope, definitions: Definitions,
                 report: Reporter) -> Skip:
    """Report ``name`` as unknown where ``scope`` reads it, suggesting a field, a definition
    or a function."""
    fields = set(NUMERIC_FIELDS) | set(ID_COLUMNS) | set(VOCAB_COLUMNS)
    choices = fields | definitions.visible(scope) | set(FUNCTIONS)
    hint = did_you_mean(name, choices)
    what = "field" if hint and hint.split("'")[1] in fields else "name"
    return report.fail(pos, f"unknown {what} '{name}'", hint)


def id_column(node: ast.Name, scope: Scope, report: Reporter) -> str:
    """The id column ``node`` names (``media_id``, ``{id}``), or a reported :class:`Skip`."""
    column = expand_template(node, scope, report)
    if column not in ID_COLUMNS:
        hint = did_you_mean(column, ID_COLUMNS) or f"one of {', '.join(ID_COLUMNS)}"
        raise report.fail(node.pos, f"'{column}' is not an id column", hint)
    return column
