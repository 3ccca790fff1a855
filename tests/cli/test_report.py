"""``dv365 report RUN_DIR [-o FILE]``: writes the page, prints its path; a partial run is
still a report (exit 0); a folder that is no run directory is one line and exit 2."""

from __future__ import annotations

import pytest

from dv365.cli import app as cli_app
from tests.report.run_dirs import experiments, provenance, write_complete, write_json


def write_small(root):
    """A run directory with provenance and one experiment (quick to draw)."""
    write_json(root / "provenance.json", provenance())
    write_json(root / "experiments" / "gap" / "result.json", experiments()["gap"])
    return root


def test_report_writes_the_page_into_the_run_directory_by_default(capsys, tmp_path,
                                                                  monkeypatch):
    root = write_complete(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    assert cli_app.main(["report", "run"]) == 0
    assert capsys.readouterr().out.strip() == "run/report.html"
    html = (root / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and 'id="experiment-staleness"' in html
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no leftovers


def test_report_writes_where_o_says(capsys, tmp_path):
    write_small(tmp_path / "run")
    target = tmp_path / "out" / "page.html"
    assert cli_app.main(["report", str(tmp_path / "run"), "-o", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert "<svg" in target.read_text()


def test_a_partial_run_is_still_a_report(capsys, tmp_path):
    root = write_small(tmp_path / "run")
    (root / "experiments" / "gap" / "result.json").write_text("{")
    assert cli_app.main(["report", str(root)]) == 0
    html = (root / "report.html").read_text()
    assert "not written yet (the evaluation did not finish)" in html
    assert "experiments/gap/result.json</code>: not valid JSON at line 1" in html


@pytest.mark.parametrize("case", ["absent", "empty", "output-is-a-folder"])
def test_errors_are_one_line(capsys, tmp_path, case):
    args = ["report", str(tmp_path / "run")]
    if case == "empty":
        (tmp_path / "run").mkdir()
    elif case == "output-is-a-folder":
        write_small(tmp_path / "run")
        (tmp_path / "folder").mkdir()
        args += ["-o", str(tmp_path / "folder")]
    assert cli_app.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert {"absent": "the run directory does not exist",
            "empty": "holds no file of a dv365 eval run",
            "output-is-a-folder": "is a folder, not a file to write"}[case] in err
