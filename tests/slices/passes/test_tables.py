"""Table declarations: rows, dim (the table's or the spec's) and hashing."""

from __future__ import annotations

from dv365.slices.compile import compile_spec


def test_tables_take_rows_dim_and_hashing():
    ir = compile_spec("gap 0\ndim 16\ntable a: media_id, rows 2^20, hashing hash(9)\n"
                      "table b: topic_id, rows 100, dim 16, hashing identity\n"
                      "slice x: from explicit pool media_id into a mean\n"
                      "slice y: from explicit pool topic_id into b mean\n")
    a, b = ir.tables
    assert (a.num_rows, a.dim, a.hashing.kind, a.hashing.seed) == (2**20, 16, "hash", 9)
    assert (b.hashing.kind, b.id_column) == ("identity", "topic_id")
