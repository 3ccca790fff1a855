"""The slice language's fixed vocabulary and limits, in one place.

What a spec may call (:data:`FUNCTIONS`), which event fields are numbers
(:data:`NUMERIC_FIELDS`), how comparisons flip and negate, the keywords of the grammar, and
the limits that keep a spec (or a fuzzer's garbage) from running away. The parser, the
elaboration passes, the printer and the reference semantics read them from here; durations
and their units are :mod:`dv365.durations`'.
"""

from __future__ import annotations

import re
from functools import lru_cache

from dv365.data.schema import EVENT_FIELDS
from dv365.durations import DAY_MS

# The functions of the expression grammar (the IR's ``Unary`` ops, with ``neg``).
FUNCTIONS = ("ln", "log1p", "exp", "sqrt", "abs")
# The event fields that are numbers (seconds, NaN = null): usable in arithmetic.
NUMERIC_FIELDS = tuple(sorted(n for n, f in EVENT_FIELDS.items() if f.kind == "seconds"))
# How a table maps ids to rows (:class:`dv365.slices.ir.Hashing`).
HASHINGS = ("modulo", "hash", "identity")
# The placeholder every slice statement binds to its window (so no for may bind it).
WINDOW_VARIABLE = "window"

# ``a op b`` is ``b FLIPPED[op] a``.
FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
# ``not (a op b)`` is ``a NEGATED[op] b`` for a non-null ``a`` (a null leaf is false either way).
NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}

# ----------------------------------------------------------------------------- limits
# Deeper expressions are surely generated garbage; the limit keeps every later (recursive)
# pass far from Python's recursion limit.
MAX_DEPTH = 100
# Magnitude beyond which a literal is surely a mistake (and float64 arithmetic gets lossy).
MAX_LITERAL = 1e300
# A duration literal beyond this is out of range when parsed ...
MAX_DURATION_LITERAL_MS = 1000 * 366 * DAY_MS
# ... and a gap or a window longer than this is refused when elaborated.
MAX_GAP_OR_WINDOW_MS = 100 * 366 * DAY_MS
MAX_ROWS = 2**40
MAX_DIM = 65_536
MAX_SEED = 2**64 - 1
MAX_SLICES = 10_000  # the paper's specs have ~200; a generator product beyond is a mistake
MAX_INCLUDE_DEPTH = 32
# Checked before parsing, which costs tens of microseconds a token: a spec and its includes
# hold at most MAX_TOKENS tokens (reels.slice has about 1,000), each file at most
# MAX_SOURCE_BYTES bytes, so that no input keeps the compiler busy for more than a few seconds.
MAX_TOKENS = 50_000
MAX_SOURCE_BYTES = 2**21


@lru_cache(maxsize=1)
def keywords() -> frozenset[str]:
    """Every keyword of the grammar (read from the grammar file, so they never drift)."""
    from dv365.slices.grammar import grammar_text

    return frozenset(re.findall(r'"([a-z]+)"', grammar_text()))
