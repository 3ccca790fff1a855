"""Source text -> typed AST (:mod:`dv365.slices.ast`), with friendly syntax errors.

Whatever the bytes, parsing ends in a :class:`~dv365.slices.ast.Module` or a
:class:`~dv365.slices.errors.SpecError`: undecodable bytes, unexpected characters or tokens,
unterminated strings, missing brackets, numbers out of range and expressions nested deeper
than :data:`~dv365.slices.language.MAX_DEPTH` all become positioned diagnostics. The LALR
parser itself is not recursive; the tree is checked for depth (iteratively) before the
recursive conversion.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from dv365.durations import UNIT_MS
from dv365.slices import ast, language
from dv365.slices.errors import Diagnostic, Pos, SpecError
from dv365.slices.grammar import parser
from dv365.slices.language import MAX_DEPTH, MAX_DURATION_LITERAL_MS, MAX_LITERAL

# What the parser expected, in words.
_TERMINAL_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "DURATION": "a duration", "STRING": "a string",
    "COMP_OP": "a comparison", "ADD_OP": "'+' or '-'", "MUL_OP": "'*' or '/'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'",
    "RBRACE": "'}'", "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "CIRCUMFLEX": "'^'",
    "MINUS": "'-'", "PLUS": "'+'", "MEAN": "'mean'", "SUM": "'sum'",
    "ALL": "'all'", "$END": "the end of the file",
}
_CLOSERS_BY_CHAR = {")": "RPAR", "]": "RSQB", "}": "RBRACE"}
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
# What the lexer would read, roughly (ranges and numbers may merge), with comments skipped:
# enough to refuse an oversized spec before the parser spends its time on it.
_TOKEN = re.compile(r'#[^\n]*|("(?:[^"\\\n\r]|\\[^\n\r])*"|[A-Za-z0-9_.{}]+|[=!<>]=|\S)')
_SKIP = re.compile(r'#[^\n]*|"(?:[^"\\\n\r]|\\[^\n\r])*"|\{[A-Za-z_][A-Za-z0-9_]*\}')


def _words(terminal: str) -> str:
    if terminal in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[terminal]
    pattern = parser().get_terminal(terminal).pattern if terminal else None
    if pattern is not None and pattern.type == "str":
        return f"'{pattern.value}'"
    return terminal.lower()


def decode(data: bytes | str, path: str) -> str:
    """UTF-8 text of a spec (a BOM is dropped); undecodable bytes are a positioned error."""
    if isinstance(data, str):
        text = data
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = data[: exc.start]
            line = before.count(b"\n") + 1
            col = exc.start - (before.rfind(b"\n") + 1) + 1
            raise SpecError([Diagnostic(
                Pos(path, line, col), f"byte 0x{data[exc.start]:02x} is not valid UTF-8",
                "slice specs are UTF-8 text")]) from None
    return text[1:] if text.startswith("\ufeff") else text


def parse(source: bytes | str, path: str = "<spec>", *, tokens_before: int = 0) -> ast.Module:
    """Parse one spec file's text into its AST (includes are not followed here).

    A source over :data:`~dv365.slices.language.MAX_SOURCE_BYTES`, or with more than
    :data:`~dv365.slices.language.MAX_TOKENS` tokens together with the ``tokens_before`` of
    the files that include it, is refused before parsing; ``Module.tokens`` is how many it
    has.
    """
    if len(source) > language.MAX_SOURCE_BYTES:
        raise SpecError([_too_large(path, len(source))])
    text = decode(source, path)
    tokens = _count_tokens(text, path, tokens_before)
    try:
        tree = parser().parse(text)
    except UnexpectedInput as exc:
        raise SpecError([_syntax_diagnostic(exc, text, path)], {path: text}) from None
    except RecursionError:  # pragma: no cover - the LALR parser is iterative
        raise SpecError([Diagnostic(Pos(path, 1, 1), "spec nested too deeply")],
                        {path: text}) from None
    _check_depth(tree, path, text)
    builder = _Builder(path)
    module_tree = builder.transform(tree)
    if builder.diagnostics:
        raise SpecError(builder.diagnostics, {path: text})
    return ast.Module(path=path, source=text, statements=tuple(module_tree), tokens=tokens)


def _too_large(path: str, size: int) -> Diagnostic:
    return Diagnostic(Pos(path, 1, 1), f"spec file is {size:,} bytes, more than the limit of "
                      f"{language.MAX_SOURCE_BYTES:,}", "write repeated slices with for blocks")


def _count_tokens(text: str, path: str, tokens_before: int) -> int:
    """The number of tokens in ``text``; a located error at the first one past the limit."""
    limit = language.MAX_TOKENS - tokens_before
    count = 0
    for match in _TOKEN.finditer(text):
        if match.lastindex is None:  # a comment
            continue
        count += 1
        if count > limit:
            at = match.start()
            line = text.count("\n", 0, at) + 1
            col = at - (text.rfind("\n", 0, at) + 1) + 1
            what = "spec and its includes are" if tokens_before else "spec is"
            raise SpecError([Diagnostic(
                Pos(path, line, col), f"{what} longer than {language.MAX_TOKENS:,} tokens",
                "write repeated slices with for blocks")], {path: text})
    return count


# ----------------------------------------------------------------------------- syntax errors
def _syntax_diagnostic(exc: UnexpectedInput, text: str, path: str) -> Diagnostic:
    line, col = getattr(exc, "line", None), getattr(exc, "column", None)
    if isinstance(exc, UnexpectedEOF) or line is None or line < 1:
        line, col = _end_position(text)
    pos = Pos(path, line, col)
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        if char == '"':
            return Diagnostic(pos, "unterminated string", 'close it with " on the same line')
        if char.isdigit():
            match = re.match(r"[0-9.]+([A-Za-z_]\w*)", text[exc.pos_in_stream:])
            if match:
                return Diagnostic(pos, f"unknown unit '{match.group(1)}'",
                                  "durations use ms, s, m, h, d or w, e.g. 15s or 7d")
        shown = char if char.isprintable() and char.strip() else f"U+{ord(char):04X}" if char \
            else "end of file"
        return Diagnostic(pos, f"unexpected character '{shown}'")
    expected = sorted(getattr(exc, "expected", None) or getattr(exc, "accepts", None) or ())
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            line, col = _end_position(text)
            pos = Pos(path, line, col)
            what = "end of file"
        else:
            pos = Pos(path, token.line, token.column, token.end_line, token.end_column)
            what = f"'{_short(str(token))}'"
        offset = len(text) if token.type == "$END" else token.start_pos
        unclosed = _unclosed(text, offset)
        if unclosed is not None:
            opener, line_, col_ = unclosed
            closer = {"(": ")", "[": "]", "{": "}"}[opener]
            if _CLOSERS_BY_CHAR[closer] in expected:
                return Diagnostic(pos, f"unexpected {what}: missing '{closer}'",
                                  f"'{opener}' opened at {line_}:{col_}")
        if token.type == "NAME" and _number_before(text, token):
            return Diagnostic(pos, f"unknown unit '{_short(str(token))}'",
                              "durations use ms, s, m, h, d or w, e.g. 15s or 7d")
        if token.type == "EQUAL" and re.search(r"\.\.\s*[A-Za-z_]\w*\s*$",
                                               text[: token.start_pos]):
            # The one ambiguity of the grammar: "x in 15s..", then "name = ..." reads as
            # the range "15s..name" (newlines are whitespace).
            return Diagnostic(pos, "unexpected '=': the open range before it took the next "
                              "name as its upper end", "write 'x >= 15s' instead of "
                              "'x in 15s..' before a definition")
        friendly = _friendly(exc) if token.type != "$END" else None
        if friendly:
            return Diagnostic(pos, f"unexpected {what}: {friendly}")
        return Diagnostic(pos, f"unexpected {what}; expected {_expected_words(expected)}")
    return Diagnostic(pos, f"unexpected end of file; expected {_expected_words(expected)}")


def _unclosed(text: str, end: int) -> tuple[str, int, int] | None:
    """The innermost bracket still open at ``end`` (skipping comments, strings and
    ``{placeholders}``), with its line and column; None when all are closed."""
    stack: list[tuple[str, int]] = []
    i = 0
    pairs = {")": "(", "]": "[", "}": "{"}
    while i < end:
        match = _SKIP.match(text, i)
        if match:
            i = match.end()
            continue
        c = text[i]
        if c in "([{":
            stack.append((c, i))
        elif c in pairs:
            if not stack or stack[-1][0] != pairs[c]:
                return None  # unbalanced the other way: let the generic message speak
            stack.pop()
        i += 1
    if not stack:
        return None
    c, at = stack[-1]
    line = text.count("\n", 0, at) + 1
    return c, line, at - (text.rfind("\n", 0, at) + 1) + 1


def _friendly(exc: UnexpectedToken) -> str | None:
    """A hint for mistakes that the expected-token list explains badly."""
    if exc.token.type == "EQUAL":
        return "compare with '=='; '=' only defines names (gamma = 0.8)"
    examples = {
        "a slice needs ':' after its name": ["slice x from", "slice x where"],
        "a table needs ':' and its id column (table t: media_id, rows 1000)": ["table t media_id",
                                                                              "table t,"],
        "table options are separated by commas": ["table t: media_id rows"],
        "a slice name comes before ':'": ["slice :"],
        "separate windows with commas: over all, 7d, 3d": [
            "slice x: over all 7d", "slice x: over 3d 7d", "slice x: mean over all 7d",
            "slice x: mean over 3d 7d", "slice x: over 3d, all 7d", "slice x: mean over 3d, all 7d",
            "slice x: over 3d, 7d 1d", "slice x: mean over 3d, 7d 1d"],
    }
    # The parser state matches only at the same stack depth: the first statement of a file
    # sits one level lower than the others, so every example comes in both positions.
    examples = {label: [*texts, *(f"gap 1h {t}" for t in texts)]
                for label, texts in examples.items()}
    try:
        return exc.match_examples(parser().parse, examples, use_accepts=True)
    except Exception:  # noqa: BLE001 - a hint is optional; never fail because of it
        return None


def _expected_words(expected: list[str]) -> str:
    words = sorted({_words(t) for t in expected})
    if not words:
        return "something else"
    if len(words) > 8:
        return "a statement, clause or expression"
    return ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1]


def _number_before(text: str, token: Token) -> bool:
    i = token.start_pos
    return i is not None and i > 0 and text[i - 1].isdigit()


def _short(s: str, n: int = 40) -> str:
    s = "".join(c if c.isprintable() else "?" for c in s)
    return s if len(s) <= n else s[: n - 3] + "..."


def _end_position(text: str) -> tuple[int, int]:
    line = text.count("\n") + 1
    return line, len(text) - (text.rfind("\n") + 1) + 1


def _check_depth(tree: Tree, path: str, text: str) -> None:
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            meta = node.meta
            pos = Pos(path, getattr(meta, "line", 1), getattr(meta, "column", 1))
            raise SpecError([Diagnostic(pos, f"expression nested more than {MAX_DEPTH} deep",
                                        "split it into named parts")], {path: text})
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))


# ----------------------------------------------------------------------------- tree -> AST
def _filtered(children):
    return [c for c in children if c is not None]


@v_args(meta=True)
class _Builder(Transformer):
    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.diagnostics: list[Diagnostic] = []

    # positions
    def _pos(self, meta) -> Pos:
        if getattr(meta, "empty", True):
            return Pos(self.path, 1, 1)
        return Pos(self.path, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok_pos(self, tok: Token) -> Pos:
        return Pos(self.path, tok.line, tok.column, tok.end_line, tok.end_column)

    def _name(self, tok: Token) -> ast.Name:
        return ast.Name(self._tok_pos(tok), str(tok))

    def _error(self, pos: Pos, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(pos, message, hint))

    # statements
    def module(self, meta, children):
        return children

    def include(self, meta, children):
        return ast.Include(self._pos(meta), self._unquote(children[0]))

    def gap(self, meta, children):
        return ast.Gap(self._pos(meta), children[0])

    def dim(self, meta, children):
        return ast.Dim(self._pos(meta), children[0])

    def define(self, meta, children):
        return ast.Define(self._pos(meta), self._name(children[0]), children[1])

    def table(self, meta, children):
        name, id_column, *options = children
        rows = tuple(o[1] for o in options if o[0] == "rows")
        dims = tuple(o[1] for o in options if o[0] == "dim")
        hashings = tuple(o[1] for o in options if o[0] == "hashing")
        return ast.TableDecl(self._pos(meta), self._name(name), self._name(id_column), rows,
                             dims, hashings)

    def rows(self, meta, children):
        return ("rows", children[0])

    def table_dim(self, meta, children):
        return ("dim", children[0])

    def hashing(self, meta, children):
        return ("hashing", ast.HashingSpec(self._pos(meta), self._name(children[0]), children[1]))

    def slice(self, meta, children):
        return ast.SliceDecl(self._pos(meta), children[0], tuple(children[1:]))

    def slice_name(self, meta, children):
        tok = children[0]
        if tok.type == "STRING":
            return ast.Name(self._tok_pos(tok), self._unquote(tok))
        return self._name(tok)

    def from_clause(self, meta, children):
        return ast.From(self._pos(meta), self._name(children[0]))

    def where_clause(self, meta, children):
        return ast.Where(self._pos(meta), children[0])

    def pool_clause(self, meta, children):
        table = self._name(children[1]) if children[1] is not None else None
        return ast.Pool(self._pos(meta), self._name(children[0]), table)

    def mean(self, meta, children):
        return ast.Pooling(self._pos(meta), "mean")

    def plain_sum(self, meta, children):
        return ast.Pooling(self._pos(meta), "sum")

    def weighted(self, meta, children):
        kind = "weighted_mean" if str(children[0]) == "mean" else "weighted_sum"
        return ast.Pooling(self._pos(meta), kind, children[1])

    def over(self, meta, children):
        return ast.Over(self._pos(meta), tuple(children))

    def window(self, meta, children):
        value = children[0]
        if isinstance(value, Token) and value.type == "ALL":
            return ast.Window(self._pos(meta), None)
        return ast.Window(self._pos(meta), value)

    def generator(self, meta, children):
        bindings = tuple(c for c in children if isinstance(c, ast.Binding))
        body = tuple(c for c in children if not isinstance(c, ast.Binding))
        return ast.Generator(self._pos(meta), bindings, body)

    def binding(self, meta, children):
        var, *values = _filtered(children)
        values = [v for v in values if isinstance(v, ast.LoopValue)]
        return ast.Binding(self._pos(meta), self._name(var), tuple(values))

    def loop_value(self, meta, children):
        label, value = children
        return ast.LoopValue(self._pos(meta), value,
                             self._name(label) if label is not None else None)

    # expressions
    def or_expr(self, meta, children):
        return self._logic(meta, "or", children)

    def and_expr(self, meta, children):
        return self._logic(meta, "and", children)

    def _logic(self, meta, op, children):
        args = []
        for c in children:
            # and/or are associative: (a or b) or c is one flat node
            if isinstance(c, ast.Logic) and c.op == op:
                args.extend(c.args)
            else:
                args.append(c)
        return ast.Logic(self._pos(meta), op, tuple(args))

    def not_(self, meta, children):
        return ast.Not(self._pos(meta), children[0])

    def compare(self, meta, children):
        return ast.Compare(self._pos(meta), tuple(children[0::2]),
                           tuple(str(t) for t in children[1::2]))

    def in_(self, meta, children):
        return ast.In(self._pos(meta), children[0], children[1])

    def not_in(self, meta, children):
        return ast.In(self._pos(meta), children[0], children[1], negated=True)

    def value_set(self, meta, children):
        return ast.ValueSet(self._pos(meta), tuple(_filtered(children)))

    def range(self, meta, children):
        return ast.Range(self._pos(meta), children[0], children[1])

    def binop(self, meta, children):
        return ast.BinOp(self._pos(meta), str(children[1]), children[0], children[2])

    def pow(self, meta, children):
        return ast.BinOp(self._pos(meta), "^", children[0], children[1])

    def neg(self, meta, children):
        return ast.Neg(self._pos(meta), children[0])

    def number(self, meta, children):
        tok = children[0]
        value = float(tok)
        if not math.isfinite(value) or abs(value) > MAX_LITERAL:
            self._error(self._tok_pos(tok), f"number {_short(str(tok))} is out of range",
                        f"literals are at most {MAX_LITERAL:.0e}")
            value = 0.0
        return ast.Number(self._tok_pos(tok), str(tok), value)

    def duration(self, meta, children):
        tok = children[0]
        text = str(tok)
        unit = re.search(r"[a-z]+$", text).group(0)
        amount = Fraction(text[: -len(unit)])
        exact_ms = amount * UNIT_MS[unit]
        if exact_ms > MAX_DURATION_LITERAL_MS:
            self._error(self._tok_pos(tok), f"duration {_short(text)} is out of range",
                        "at most 1000 years")
            exact_ms = Fraction(0)
        seconds = float(exact_ms / 1000)
        ms = int(exact_ms) if exact_ms.denominator == 1 else None
        return ast.Number(self._tok_pos(tok), text, seconds, unit, ms)

    def string(self, meta, children):
        return ast.String(self._tok_pos(children[0]), self._unquote(children[0]))

    def name(self, meta, children):
        return self._name(children[0])

    def call(self, meta, children):
        return ast.Call(self._pos(meta), self._name(children[0]),
                        tuple(_filtered(children[1:])))

    def _unquote(self, tok: Token) -> str:
        body = str(tok)[1:-1]
        out, i = [], 0
        # JSON's escapes, so that the printer (which quotes with json.dumps) round-trips
        # any name or value, control characters included.
        escapes = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/",
                   '"': '"', "\\": "\\"}
        while i < len(body):
            c = body[i]
            if c == "\\" and body[i + 1:i + 2] == "u" and _HEX4.fullmatch(body[i + 2:i + 6]):
                out.append(chr(int(body[i + 2:i + 6], 16)))
                i += 6
            elif c == "\\" and i + 1 < len(body):
                nxt = body[i + 1]
                if nxt not in escapes:
                    self._error(Pos(self.path, tok.line, tok.column + i + 1),
                                f"unknown escape '\\{_short(nxt)}' in string",
                                'use \\" \\\\ \\n \\t or \\uXXXX')
                out.append(escapes.get(nxt, nxt))
                i += 2
            else:
                out.append(c)
                i += 1
        return "".join(out)


def read_source(path: Path) -> bytes:
    """The bytes of a spec file; a missing, unreadable or oversized file is a positioned
    error."""
    try:
        size = path.stat().st_size
        if size > language.MAX_SOURCE_BYTES:
            raise SpecError([_too_large(str(path), size)])
        with path.open("rb") as file:  # a file growing meanwhile is cut past the limit
            return file.read(language.MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        raise SpecError([Diagnostic(Pos(str(path), 1, 1),
                                    f"cannot read spec: {exc.strerror or exc}")]) from None
