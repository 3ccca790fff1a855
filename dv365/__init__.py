"""dv365: extremely long user-history modeling (Meta's DV365, KDD 2025).

Slice specs cut a user's unified timeline (UniTi) into sub-sequences that are pooled into
vectors; a foundation encoder compresses them into a compact user embedding that downstream
models share.
"""

__version__ = "0.1.0"
