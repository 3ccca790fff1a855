"""Elaboration, the driver: every pass runs and reports, whatever failed before it."""

from __future__ import annotations

from dv365.data.schema import DEFAULT_VOCAB
from dv365.durations import DEFAULT_GAP_MS
from dv365.slices.elaborate import elaborate
from dv365.slices.errors import Pos
from dv365.slices.parse import parse


def test_every_pass_reports_and_what_is_sound_is_kept():
    module = parse("table media: media_id, rows 100, dim 8\n"
                   "for a in [1] { gap 1d }\n"
                   "x = nope\n"
                   "table t: media_id, rows 0, dim 8\n"
                   "slice good: from implicit pool media_id into media\n"
                   "slice bad: from implicit pool media_id into t\n", "t.slice")
    out = elaborate(module, DEFAULT_VOCAB)
    assert [(str(d.pos), d.message) for d in out.diagnostics] == [
        ("t.slice:2:16", "gap must be set at the top level, not inside a for"),  # expansion
        ("t.slice:3:5", "unknown name 'nope'"),  # declarations
        ("t.slice:4:25", "rows must be between 1 and 1,099,511,627,776, not 0"),
        ("t.slice:6:45", "unknown table 't'"),  # slices
    ]
    assert [t.name for t in out.tables] == ["media"]
    assert out.table_origins == {"media": Pos("t.slice", 1, 7, 1, 12)}
    assert [s.name for s in out.slices] == ["good"]
    assert out.slice_origins["good"].name == Pos("t.slice", 5, 7, 5, 11)
    assert out.gap_ms == DEFAULT_GAP_MS
    assert out.vocab == {c: tuple(v) for c, v in DEFAULT_VOCAB.items()}
    assert dict(out.sources) == {"t.slice": module.source}
