"""The downstream stage: how ranking and retrieval models consume the exported embedding.

:mod:`dv365.downstream.adapters` turns stored DV365 vectors into what a downstream model
takes (registered through ``dv365_register_adapters``); :mod:`dv365.downstream.store_input`
reads them from a store, one version pinned for a whole training run (docs/downstream.md).
"""
