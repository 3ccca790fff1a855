"""dv365: extremely long user-history modeling (Meta's DV365, KDD 2025).

Slice specs cut a user's unified timeline (UniTi) into sub-sequences that are pooled into
vectors; a foundation encoder compresses them into a compact user embedding that downstream
models share.
"""

__version__ = "0.1.0"

from dv365.hookspecs import hookimpl  # noqa: E402 - the marker plugins decorate hooks with

__all__ = ["__version__", "hookimpl"]
