"""Export: every user's embedding, computed from a checkpoint at one request time, encoded by
a codec into checksummed records and written, shard by shard, to a snapshot of a store.

The stage below the stores: it declares what it needs from a store
(:mod:`dv365.export.sink`) and the stores implement it.
"""
