"""Whether a checkpoint's spec means the same on the data an export reads.

Kernels bind the enum values a spec's filters name (``action in [like]``) to the codes of the
data they run on, by name. So a checkpoint fits a dataset when every value its filters name
is declared by the data, and, for each column they filter on, the data declares no value the
spec was not compiled against: a negated filter (``action not in [skip]``) would silently
select events of a value the model never saw in training.
"""

from __future__ import annotations

from dv365.data.schema import DEFAULT_VOCAB
from dv365.data.vocabulary import Vocabulary
from dv365.errors import DataError
from dv365.slices.compile import enum_values, require_values
from dv365.slices.ir import SpecIR


def check_vocabulary(ir: SpecIR, data: Vocabulary, *, where: str, data_where: str) -> None:
    """A one-line :class:`DataError` naming the column and value where the checkpoint's spec
    (``where``) and the data's vocabulary (``data_where``) disagree."""
    require_values(ir, data, where=where)
    compiled = {**DEFAULT_VOCAB, **ir.vocab}
    for column in sorted({column for _, column, _ in enum_values(ir)}):
        known = set(compiled.get(column, ()))
        new = [v for v in data.values(column) if v not in known]
        if new:
            raise DataError(f"the data declares {column} {new[0]!r}, which the checkpoint's "
                            f"spec was not compiled against: its {column} filters would select "
                            "events the model never saw", where=data_where,
                            hint=f"the spec knows {column} values {', '.join(sorted(known))}; "
                                 "train on data with this vocabulary")
