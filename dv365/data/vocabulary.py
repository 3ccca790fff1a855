"""Binding enum value strings to the integer codes of one dataset's vocabulary.

A slice spec names enum values as strings (``action in [like, share]``); the data stores them
as ``int8`` codes, each dataset in the order of its own declared vocabulary
(:class:`~dv365.data.schema.DatasetMeta`). :class:`Vocabulary` is that binding, in one
place: the compiler checks names against it, the reference and the kernels turn names into
codes with it, and its :meth:`~Vocabulary.key` is part of every cache key that depends on
codes. ``timeline`` is fixed (:data:`~dv365.data.schema.TIMELINES`); the other enumerated
columns are whatever the data declares.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Mapping, Sequence

from dv365.data.schema import DEFAULT_VOCAB, TIMELINES, VOCAB_COLUMNS, DatasetMeta
from dv365.errors import DataError

if TYPE_CHECKING:
    from dv365.data.event_store import EventStore

class Vocabulary:
    """Column -> declared values in code order, for the enumerated columns.

    Build one with :meth:`of` from a :class:`DatasetMeta`, a plain mapping, another
    ``Vocabulary`` or ``None`` (the generator's :data:`~dv365.data.schema.DEFAULT_VOCAB`).
    """

    __slots__ = ("_values", "_key")

    def __init__(self, values: Mapping[str, Sequence[str]]):
        self._values = {c: tuple(values.get(c, ())) for c in VOCAB_COLUMNS}
        self._key = tuple((c, self._values[c]) for c in VOCAB_COLUMNS)

    @classmethod
    def of(cls, source: "Vocabulary | DatasetMeta | Mapping[str, Sequence[str]] | None"
           ) -> "Vocabulary":
        """The vocabulary of ``source`` (``None``: the default vocabulary)."""
        if isinstance(source, Vocabulary):
            return source
        if source is None:
            return cls(DEFAULT_VOCAB)
        if isinstance(source, DatasetMeta):
            return cls({c: source.values(c) for c in VOCAB_COLUMNS})
        return cls(source)

    @classmethod
    def of_store(cls, store: "EventStore") -> "Vocabulary":
        """The vocabulary an event store declares (its ``meta``)."""
        meta = getattr(store, "meta", None)
        if isinstance(meta, DatasetMeta):
            return cls.of(meta)
        vocab = getattr(store, "vocab", None)
        if vocab is not None:
            return cls.of(vocab)
        raise TypeError(f"{type(store).__name__} declares no vocabulary (no meta)")

    def values(self, column: str) -> tuple[str, ...]:
        """The declared values of ``column`` in code order (``timeline`` is fixed)."""
        if column == "timeline":
            return TIMELINES
        return self._values.get(column, ())

    def as_dict(self) -> dict[str, tuple[str, ...]]:
        """``{column: values}`` for the declared columns (what an IR records)."""
        return dict(self._values)

    def key(self) -> tuple:
        """A hashable identity: equal for vocabularies that give every value the same code."""
        return self._key

    def code(self, column: str, value: str, *, slice_name: str = "?",
             where: str | None = None) -> int:
        """The code of ``value`` in ``column``; a :class:`DataError` naming the slice when
        the data does not declare it (with the closest declared value as a hint)."""
        declared = self.values(column)
        if value in declared:
            return declared.index(value)
        close = difflib.get_close_matches(value, declared, n=1)
        if close:
            hint = f"did you mean {close[0]!r}?"
        elif declared:
            hint = f"the data declares {column} values: {', '.join(declared)}"
        else:
            hint = f"the data declares no {column} values"
        raise DataError(
            f"slice {slice_name!r}: {column} value {value!r} is not in the data's vocabulary",
            where=where or f"slice {slice_name}", hint=hint)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"Vocabulary({self.as_dict()!r})"


DEFAULT_VOCABULARY = Vocabulary(DEFAULT_VOCAB)

# What callers may pass where a vocabulary is wanted.
VocabLike = Vocabulary | DatasetMeta | Mapping[str, Sequence[str]]
