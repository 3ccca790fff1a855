"""What everything downstream of the data reads: the :class:`EventStore` contract.

The kernels, the reference semantics, training and export read users' events through this
protocol and nothing else: sorted user ids, CSR offsets, one array per event column (dtypes
:data:`~dv365.data.schema.EVENT_COLUMN_DTYPES`, each user's events in time order), and the
dataset's declared vocabulary. :class:`~dv365.data.timeline.TimelineStore` is the
implementation; tests build small ones in memory the same way.
"""

from __future__ import annotations

from typing import Mapping, Protocol, runtime_checkable

import numpy as np

from dv365.data.schema import DatasetMeta


@runtime_checkable
class EventStore(Protocol):
    """Per-user CSR arrays of events.

    * ``user_ids``: int64 ``[U]``, ascending and unique;
    * ``offsets``: int64 ``[U + 1]``, starting at 0; user *index* ``u`` owns events
      ``offsets[u]:offsets[u + 1]`` of every column;
    * ``columns``: column name -> 1-D array of ``offsets[-1]`` values;
    * ``meta``: what the dataset declares, its vocabulary above all (codes of the enum
      columns index ``meta.vocab``; see :class:`~dv365.data.vocabulary.Vocabulary`).
    """

    user_ids: np.ndarray
    offsets: np.ndarray
    columns: Mapping[str, np.ndarray]
    meta: DatasetMeta
