"""``dv365 compile``: artifacts, refusal to overwrite, the summary, --explain and --data."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dv365.cli import app as cli_app
from dv365.data.schema import DatasetMeta, events_schema
from dv365.errors import DataError
from dv365.slices.compile import compile_spec, load_artifact, write_artifact

REPO = Path(__file__).resolve().parents[2]
MINIMAL = REPO / "slices" / "minimal.slice"


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "240")


def test_compile_writes_the_ir_and_summarizes(tmp_path, capsys):
    build = tmp_path / "build"
    assert cli_app.main(["compile", str(MINIMAL), "-o", str(build)]) == 0
    out = capsys.readouterr().out
    artifact = build / "minimal.ir.json"
    ir = load_artifact(artifact)
    assert ir.content_hash() == compile_spec(MINIMAL).content_hash()
    assert "6 slices, 3 tables, gap 24h, dim 16" in out
    assert "timelines: explicit 2, implicit 4" in out
    assert "pooling:   mean 4, weighted_mean 2 (2 weighted)" in out
    assert "windows:   all 2, 7d 3, 3d 1" in out
    assert "pooled output per user: 6 x 16 x 4 B = 384 B" in out
    assert f"wrote {artifact}" in out


def test_recompiling_the_same_spec_is_fine_a_different_one_needs_force(tmp_path, capsys):
    build = tmp_path / "build"
    spec = tmp_path / "minimal.slice"
    spec.write_text(MINIMAL.read_text())
    assert cli_app.main(["compile", str(spec), "-o", str(build)]) == 0
    assert cli_app.main(["compile", str(spec), "-o", str(build)]) == 0
    before = (build / "minimal.ir.json").read_text()
    spec.write_text(MINIMAL.read_text().replace("over all, 7d", "over all, 3d"))
    capsys.readouterr()
    assert cli_app.main(["compile", str(spec), "-o", str(build)]) == 2
    assert "holds a different compiled spec" in capsys.readouterr().err
    assert (build / "minimal.ir.json").read_text() == before
    assert cli_app.main(["compile", str(spec), "-o", str(build), "--force"]) == 0
    assert load_artifact(build / "minimal.ir.json").slices[1].name == "liked_or_shared_3d"


def test_explain_lists_every_slice_in_words(tmp_path, capsys):
    assert cli_app.main(["compile", str(MINIMAL), "-o", str(tmp_path), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "liked_or_shared_7d" in out
    assert "explicit events of the last 7d, up to 24h before the request, where action is " \
           "like or share; the mean of their media_id rows of table actions" in out
    assert "weighted by ln(dwell_time + 1) / ln(0.8 * video_duration + 1)" in out


def test_spec_errors_exit_2_and_write_nothing(tmp_path, capsys):
    spec = tmp_path / "bad.slice"
    spec.write_text("table t: media_id, rows 10, dim 4\n"
                    "slice a: from implicit where dwel_time > 3 pool media_id into t mean\n")
    assert cli_app.main(["compile", str(spec), "-o", str(tmp_path / "build")]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:2:30: error: unknown field 'dwel_time' (did you mean 'dwell_time'?)" in err
    assert "^^^^^^^^^" in err
    assert not (tmp_path / "build").exists()


def test_a_missing_spec_is_a_clean_error(tmp_path, capsys):
    assert cli_app.main(["compile", str(tmp_path / "nope.slice")]) == 1
    assert "does not exist" in capsys.readouterr().err


def _events_with_vocab(folder: Path, vocab: dict[str, list[str]]) -> None:
    schema = events_schema(DatasetMeta(kind="events", vocab=vocab))
    folder.mkdir(parents=True)
    pq.write_table(schema.empty_table(), folder / "part-00000.parquet")


def test_data_checks_values_against_the_data_sets_vocab(tmp_path, capsys):
    _events_with_vocab(tmp_path / "data" / "events",
                       {"media_type": ["video"], "surface": ["home"], "action": ["upvote"]})
    spec = tmp_path / "up.slice"
    spec.write_text("table t: media_id, rows 10, dim 4\n"
                    "slice ups: from explicit where action == upvote pool media_id into t mean\n")
    build = tmp_path / "build"
    assert cli_app.main(["compile", str(spec), "-o", str(build), "--data",
                         str(tmp_path / "data")]) == 0
    assert load_artifact(build / "up.ir.json").vocab["action"] == ("upvote",)
    assert cli_app.main(["compile", str(MINIMAL), "-o", str(build), "--data",
                         str(tmp_path / "data")]) == 2
    assert "unknown action 'like'" in capsys.readouterr().err


def test_artifacts_round_trip_and_garbage_is_a_data_error(tmp_path):
    ir = compile_spec(MINIMAL)
    path = write_artifact(ir, tmp_path / "x.ir.json")
    assert load_artifact(path) == ir
    (tmp_path / "bad.ir.json").write_text('{"tables": []}')
    with pytest.raises(DataError, match="not a compiled slice spec"):
        load_artifact(tmp_path / "bad.ir.json")
    assert not list(tmp_path.glob("*.tmp"))
    in_folder = write_artifact(ir, tmp_path / "build", name="minimal")
    assert in_folder == tmp_path / "build" / "minimal.ir.json"
    assert write_artifact(ir, tmp_path / "build").name == f"{ir.content_hash()[:12]}.ir.json"


def test_without_data_an_unknown_value_hints_that_data_binds_the_datas_vocabulary(tmp_path,
                                                                                 capsys):
    spec = tmp_path / "ratings.slice"
    spec.write_text("table t: media_id, rows 10, dim 4\n"
                    "slice d: from explicit where action == dislike pool media_id into t mean\n"
                    "slice r: from explicit where action in [rate] pool media_id into t mean\n")
    assert cli_app.main(["compile", str(spec), "-o", str(tmp_path / "build")]) == 2
    err = capsys.readouterr().err
    hint = "checked against the generator's default vocabulary; --data DATA binds the " \
           "data's vocabulary"
    assert f"unknown action 'dislike' (did you mean 'like'? {hint})" in err
    assert f"unknown action 'rate' (action is one of like, share, comment, save, follow, " \
           f"profile_visit, hide, report; {hint})" in err
    # other mistakes get no such hint, and with --data neither do values
    spec.write_text("table t: media_id, rows 10, dim 4\n"
                    "slice d: from explicit where dwel_time > 3 pool media_id into t mean\n")
    assert cli_app.main(["compile", str(spec), "-o", str(tmp_path / "build")]) == 2
    assert "--data" not in capsys.readouterr().err
    _events_with_vocab(tmp_path / "data" / "events",
                       {"media_type": ["movie"], "surface": ["catalog"], "action": ["like"]})
    spec.write_text("table t: media_id, rows 10, dim 4\n"
                    "slice d: from explicit where action == dislike pool media_id into t mean\n")
    assert cli_app.main(["compile", str(spec), "-o", str(tmp_path / "build"), "--data",
                         str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "unknown action 'dislike' (did you mean 'like'?)" in err and "--data" not in err


def test_paths_in_messages_are_normalized(tmp_path, monkeypatch, capsys):
    (tmp_path / "configs").mkdir()
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "minimal.slice").write_text(MINIMAL.read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PWD", raising=False)
    assert cli_app.main(["compile", "configs/../specs/minimal.slice", "-o",
                         "configs/../build"]) == 0
    assert "wrote build/minimal.ir.json (IR " in capsys.readouterr().out
    (tmp_path / "specs" / "bad.slice").write_text("table t: media_id, rows 10, dim 4\n"
                                                  "slice a: from implicit where dwel_time > 3 "
                                                  "pool media_id into t mean\n")
    assert cli_app.main(["compile", "configs/../specs/bad.slice", "-o", "build"]) == 2
    assert capsys.readouterr().err.startswith("specs/bad.slice:2:30: error: unknown field")


def test_an_artifact_path_that_is_a_folder_exits_2_in_one_line(tmp_path, capsys):
    spec = tmp_path / "x.slice"
    spec.write_text("table t: media_id, rows 10, dim 4\n"
                    "slice a: from implicit pool media_id into t mean\n")
    (tmp_path / "build" / "x.ir.json").mkdir(parents=True)
    assert cli_app.main(["compile", str(spec), "-o", str(tmp_path / "build"), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"{tmp_path}/build/x.ir.json: error: {tmp_path}/build/x.ir.json is a folder, "
                   "not a compiled spec file (remove it or pick another build folder with -o)")


def test_a_folder_or_an_overlong_name_as_the_spec_exits_2_in_one_line(tmp_path, capsys):
    assert cli_app.main(["compile", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a folder, not a spec file" in err and len(err.splitlines()) == 1
    assert cli_app.main(["compile", str(tmp_path / ("a" * 300 + ".slice"))]) == 2
    err = capsys.readouterr().err.strip()
    assert "has a name too long for the file system" in err and len(err.splitlines()) == 1
