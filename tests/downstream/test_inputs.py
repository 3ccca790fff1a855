"""Batches of downstream examples: the recent events strictly before each request, jagged,
the target's features, labels and catalogue row."""

import numpy as np

from dv365.downstream.catalogue import Catalogue
from dv365.downstream.inputs import BatchBuilder
from dv365.model.examples import item_rows_of
from tests.downstream.conftest import ITEM_ROWS


def test_each_example_gets_its_last_k_events_before_the_request_oldest_first(downstream_data):
    _, store, examples, _ = downstream_data
    builder = BatchBuilder(store, examples, recent=7, item_rows=ITEM_ROWS)
    rows = np.array([5, 0, 17, 5])
    batch = builder(rows)
    seq = batch.sequences
    offsets = seq.offsets.numpy()
    for b, i in enumerate(rows):
        u, t = examples.user_index[i], examples.request_ts[i]
        lo, hi = store.offsets[u], store.offsets[u + 1]
        ts = store.ts[lo:hi]
        before = np.flatnonzero(ts < t)[-7:] + lo
        got = slice(offsets[b], offsets[b + 1])
        assert list(seq.timestamps[got].numpy()) == list(store.ts[before])
        assert list(seq.rows["media_id"][got].numpy()) == list(
            item_rows_of("media_id", store.media_id[before], ITEM_ROWS["media_id"]))
        assert list(seq.action[got].numpy()) == list(store.action[before].astype(int) + 1)
        assert int(seq.query_ts[b]) == t
    assert list(batch.user_ids) == list(store.user_ids[examples.user_index[rows]])
    assert batch.labels.shape == (4, examples.labels.shape[1])


def test_the_catalogue_holds_every_item_and_each_target_finds_its_row(downstream_data):
    _, store, examples, _ = downstream_data
    catalogue = Catalogue.of(store, examples, ITEM_ROWS)
    every = np.union1d(store.media_id, examples.media_id)
    assert list(catalogue.media_id) == list(every)
    builder = BatchBuilder(store, examples, recent=3, item_rows=ITEM_ROWS, catalogue=catalogue)
    batch = builder(np.arange(10))
    assert list(catalogue.media_id[batch.target.numpy()]) == list(examples.media_id[:10])
    # An item's features are its first mention's, hashed like every other model's.
    first = np.flatnonzero(store.media_id == catalogue.media_id[0])[0]
    assert catalogue.features["author_id"][0] == item_rows_of(
        "author_id", store.author_id[first:first + 1], ITEM_ROWS["author_id"])[0]
    assert list(catalogue.index_of(np.array([-5, catalogue.media_id[3]]))) == [-1, 3]
