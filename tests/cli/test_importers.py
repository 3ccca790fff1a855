"""`dv365 import`: the options every importer shares (here: ``--delimiter``) and its notes."""

from pathlib import Path

import pyarrow.parquet as pq

from dv365.cli import app as cli_app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kuairand"
CSV_LOG = FIXTURES / "log_standard_sample_pure.csv"


def _tab_log(folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "interactions.tsv"
    path.write_text(CSV_LOG.read_text().replace(",", "\t"))  # the official log quotes nothing
    return path


def test_delimiter_as_a_shell_passes_it(tmp_path, capsys):
    log = _tab_log(tmp_path / "src")
    out = tmp_path / "data"
    assert cli_app.main(["import", "kuairand", str(log), str(out), "--delimiter", "\\t"]) == 0
    captured = capsys.readouterr()
    assert "1,000 examples" in captured.out
    # No author column and no video file: the import says what author_id became.
    (note,) = captured.err.strip().splitlines()
    assert note.startswith(f"note: {log}: 1,000 of 1,000 rows have no author_id column")
    assert set(pq.read_table(out / "events")["author_id"].to_pylist()) == {-1}


def test_a_wrong_delimiter_is_a_data_error_and_a_bad_one_a_usage_error(tmp_path, capsys):
    log = _tab_log(tmp_path / "src")
    out = tmp_path / "data"
    assert cli_app.main(["import", "kuairand", str(log), str(out), "--delimiter", ","]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{log}:1" in err and "--delimiter" in err
    assert cli_app.main(["import", "movielens", str(log), str(out), "--delimiter", "ab"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--delimiter" in err and "'ab'" in err
    assert not out.exists()


def test_movielens_takes_the_option_too(tmp_path, capsys):
    src = tmp_path / "ml"
    src.mkdir()
    (src / "ratings.csv").write_text("userId;movieId;rating;timestamp\n1;10;4.0;964982703\n")
    assert cli_app.main(["import", "movielens", str(src), str(tmp_path / "data"),
                         "--delimiter", ";"]) == 0
    assert "1 events" in capsys.readouterr().out
