"""Parsing: source text -> typed AST with positions; syntax errors are positioned SpecErrors."""

from __future__ import annotations

import pytest

from dv365.slices import ast
from dv365.slices.errors import SpecError
from dv365.slices.grammar import grammar_path
from dv365.slices.language import MAX_DEPTH
from dv365.slices.parse import parse


def only(module: ast.Module):
    (stmt,) = module.statements
    return stmt


def test_the_grammar_file_lives_in_the_repository_grammar_folder():
    assert grammar_path().parent.name == "grammar"
    assert grammar_path().name == "slice.lark"


def test_a_slice_statement_has_every_clause_with_positions():
    text = ("slice likes_{window}: from explicit where action == like\n"
            "    pool media_id into media  mean  over all, 7d")
    s = only(parse(text, "f.slice"))
    assert isinstance(s, ast.SliceDecl)
    assert s.name.name == "likes_{window}" and s.name.is_template
    assert (s.name.pos.path, s.name.pos.line, s.name.pos.col) == ("f.slice", 1, 7)
    kinds = [type(c) for c in s.clauses]
    assert kinds == [ast.From, ast.Where, ast.Pool, ast.Pooling, ast.Over]
    pool = s.clauses[2]
    assert (pool.id_column.name, pool.table.name) == ("media_id", "media")
    assert (pool.pos.line, pool.pos.col) == (2, 5)
    over = s.clauses[4]
    assert over.windows[0].value is None
    assert over.windows[1].value.ms == 7 * 86_400_000


@pytest.mark.parametrize("text, ms, seconds", [
    ("500ms", 500, 0.5), ("15s", 15_000, 15.0), ("2m", 120_000, 120.0),
    ("24h", 86_400_000, 86_400.0), ("3d", 259_200_000, 259_200.0),
    ("1w", 604_800_000, 604_800.0), ("1.5h", 5_400_000, 5_400.0),
])
def test_duration_literals_are_exact_milliseconds(text, ms, seconds):
    d = only(parse(f"x = {text}")).value
    assert (d.ms, d.value, d.unit) == (ms, seconds, text.lstrip("0123456789."))


def test_operator_precedence_and_associativity():
    e = only(parse("x = -a ^ 2 * b + c / d - e")).value
    # ((-(a ^ 2)) * b + c / d) - e
    assert isinstance(e, ast.BinOp) and e.op == "-"
    plus = e.left
    assert plus.op == "+" and plus.left.op == "*"
    assert isinstance(plus.left.left, ast.Neg) and plus.left.left.arg.op == "^"
    power = only(parse("x = a ^ b ^ c")).value
    assert power.op == "^" and power.right.op == "^"  # right-associative


def test_and_binds_tighter_than_or_and_chains_are_flat():
    e = only(parse("f = a > 1 or b > 2 and c > 3 or d > 4")).value
    assert isinstance(e, ast.Logic) and e.op == "or" and len(e.args) == 3
    assert e.args[1].op == "and"


def test_comparison_chains_ranges_and_sets():
    chain = only(parse("f = 3s <= dwell_time < 15s")).value
    assert chain.ops == ("<=", "<") and len(chain.operands) == 3
    rng = only(parse("f = dwell_time in ..3s")).value
    assert rng.target.lo is None and rng.target.hi.ms == 3000
    open_hi = only(parse("f = dwell_time not in 15s..")).value
    assert open_hi.negated and open_hi.target.hi is None
    members = only(parse('f = surface in [reels, "feed",]')).value
    assert [type(i) for i in members.target.items] == [ast.Name, ast.String]


def test_generators_nest_and_label_values():
    g = only(parse("for a in [x = 1, y], b in [z] { for c in [w] { slice s: from explicit "
                   "pool media_id into t mean } }"))
    assert [b.var.name for b in g.bindings] == ["a", "b"]
    first = g.bindings[0].values[0]
    assert first.label.name == "x" and first.value.value == 1.0
    assert isinstance(g.body[0], ast.Generator)


def test_tables_includes_comments_and_settings():
    m = parse('# a comment\ninclude "common.slice"  # trailing\ngap 0\ndim 32\n'
              'table t: author_id, rows 2^10, dim 8, hashing hash(3)\n')
    inc, gap, dim, table = m.statements
    assert inc.path == "common.slice"
    assert gap.value.value == 0 and dim.value.value == 32
    assert table.id_column.name == "author_id" and table.hashings[0].kind.name == "hash"


def test_strings_unescape():
    s = only(parse(r'x = "a \"b\" \\ c"')).value
    assert s.value == 'a "b" \\ c'


def test_keywords_do_not_swallow_longer_names():
    m = parse("slices = 1\nmeans = 2\nall_time = 3")
    assert [s.name.name for s in m.statements] == ["slices", "means", "all_time"]


@pytest.mark.parametrize("text, line, col, words", [
    ("slice x from explicit", 1, 9, "needs ':' after its name"),
    ('x = "abc', 1, 5, "unterminated string"),
    ("x = (1 + 2", 1, 11, "missing ')'"),
    ("f = a in [b, c", 1, 15, "missing ']'"),
    ("x = 3days", 1, 5, "unknown unit 'days'"),
    ("x = 1e999", 1, 5, "out of range"),
    ("\nx = $", 2, 5, "unexpected character '$'"),
    ("x = 1 +", 1, 8, "unexpected end of file"),
    ("f = dwell_time in 15s..\ng = 3", 2, 3, "open range before it took the next name"),
])
def test_syntax_errors_name_the_position_and_the_problem(text, line, col, words):
    with pytest.raises(SpecError) as info:
        parse(text, "f.slice")
    (d,) = info.value.diagnostics
    assert (d.pos.line, d.pos.col) == (line, col)
    assert words in d.message + " " + (d.hint or "")


def test_long_and_or_chains_are_wide_not_deep():
    e = only(parse("f = " + " and ".join(["dwell_time > 1"] * 5_000))).value
    assert isinstance(e, ast.Logic) and len(e.args) == 5_000


def test_deep_nesting_is_a_clean_error_not_a_recursion_error():
    with pytest.raises(SpecError, match="nested more than"):
        parse("f = " + "not " * 10_000 + "a > 1")
    with pytest.raises(SpecError, match="nested more than"):
        parse("x = " + "-" * 10_000 + "1")
    # parentheses alone add no depth: they are fine however many
    assert only(parse("x = " + "(" * 10_000 + "1" + ")" * 10_000)).value.value == 1
    ok = "x = " + "-" * (MAX_DEPTH - 5) + "1"
    parse(ok)


def test_undecodable_bytes_are_positioned():
    with pytest.raises(SpecError) as info:
        parse(b"x = 1\ny = \xff", "f.slice")
    d = info.value.diagnostics[0]
    assert (d.pos.line, d.pos.col) == (2, 5) and "UTF-8" in d.message


def test_a_bom_and_crlf_line_ends_are_accepted():
    m = parse("\ufeffx = 1\r\ny = 2\r\n".encode())
    assert [s.name.name for s in m.statements] == ["x", "y"]


def test_strings_accept_the_json_escapes_the_printer_writes():
    from dv365.slices.compile import compile_spec

    ir = compile_spec(
        'dim 4\ntable t: media_id, rows 10\n'
        'slice "a\\/b\\u0041": from explicit pool media_id into t mean over all\n'
    )
    assert ir.slice_names == ("a/bA",)
