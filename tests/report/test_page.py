"""The report page: one self-contained HTML file, a section and figure per experiment, the
missing parts named, every string of the run directory escaped, the same bytes each time,
and readable at phone and desktop width."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from dv365.report.page import render, section_id
from dv365.report.run_dir import read_run_dir
from tests.report.run_dirs import experiments, point, write_complete, write_json


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    root = write_complete(tmp_path_factory.mktemp("page") / "run")
    return root, render(read_run_dir(root))


def sections(html: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([^"]+)"[^>]*>(.*?)</section>', html, re.S))


def test_the_page_names_no_url(complete):
    _, html = complete
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?//""", html)
    assert all(u.startswith(("#", "data:")) for u in re.findall(r"url\(\s*['\"]?([^)'\"]*)",
                                                                html))
    assert "<script" not in html and "<link" not in html and "<img" not in html
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', html))
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_every_experiment_has_its_section_and_figure(complete):
    _, html = complete
    found = sections(html)
    for name, doc in experiments().items():
        body = found[f"experiment-{name.replace('_', '-')}"]
        assert "<svg" in body and doc["title"] in body
        for bar in doc["bars"]:
            assert bar["text"].replace("<", "&lt;") in body
    assert found["experiment-quantization"].count("badge pass") == 1
    assert found["experiment-quantization"].count("badge fail") == 1
    assert "reconstruction error" in found["experiment-quantization"]  # its columns
    assert found["experiment-staleness"].count("<svg") == 3
    assert "<svg" in found["ranking"] and found["retrieval"].count("<svg") == 2
    assert "not estimable (4 hits)" in found["retrieval"]
    assert found["data"].count("<svg") == 2 and "62,000" in found["data"]
    assert "Nothing is missing" in found["missing"] and "A partial run" not in html
    assert "dv365 eval configs/eval-demo.yaml" in html and "3f2a9c01" in html
    assert "<summary>The evaluation's config (eval.json)</summary>" in html
    assert "&quot;seeds&quot;: [" in html


def test_the_same_run_directory_gives_the_same_page(complete):
    root, html = complete
    assert render(read_run_dir(root)) == html


def test_a_partial_run_names_every_missing_part(tmp_path):
    root = write_complete(tmp_path / "run")
    (root / "results.json").unlink()
    (root / "experiments" / "staleness" / "result.json").write_text('{\n"a": 1,\n]')
    write_json(root / "experiments" / "gap" / "result.json",
               experiments()["gap"] | {"missing": ["gap 24h seed 2"]})
    html = render(read_run_dir(root))
    missing = sections(html)["missing"]
    assert "3 parts of the run could not be shown" in missing
    assert "A partial run: 3 parts could not be shown" in html
    assert "<code>results.json</code>: not written yet (the evaluation did not finish)" \
        in missing
    assert "<code>experiments/staleness/result.json</code>: not valid JSON at line 3" in missing
    assert "<code>experiment gap</code>: gap 24h seed 2 not finished" in missing
    assert 'id="experiment-staleness"' not in html and 'id="ranking"' not in html
    assert "<svg" in sections(html)["experiment-gap"]


def test_every_string_from_the_run_directory_is_escaped(tmp_path):
    hostile = '<script>alert("x")</script>'
    doc = experiments()["gap"] | {"title": hostile, "question": hostile, "reading": hostile,
                                  "name": hostile, "missing": [hostile],
                                  "columns": [hostile], "table": [{"arm": hostile,
                                                                   hostile: hostile}],
                                  "bars": [{"text": hostile, "passed": None,
                                            "value": hostile}]}
    doc["series"][0]["label"] = hostile
    write_json(tmp_path / "run" / "experiments" / "x" / "result.json", doc)
    write_json(tmp_path / "run" / "provenance.json", {"command": hostile, "commit": hostile,
                                                      "snapshots": {hostile: hostile}})
    html = render(read_run_dir(tmp_path / "run"))
    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert 'id="experiment-script-alert-x-script"' in html


def test_odd_but_valid_documents_still_render(tmp_path):
    odd = experiments()["history_length"] | {"title": None, "baseline": None, "seeds": [],
                                             "table": [{"arm": "a", "n": {"k": [1, 2]}}],
                                             "bars": [{"text": "t"}]}
    odd["axis"] = {"label": None, "values": []}  # the points still name their x
    odd["series"] = [
        point("a", "x", {"like/ne": {"estimate": 0.001, "low": None, "high": 0.002}}),
        point("a", 3, {"like/ne": {"estimate": None, "low": -1, "high": 1}}),
        point("b", 7, {"seen": {"estimate": -2.0, "low": -3.0, "high": -1.0}}),
        point("c", None, {})]
    write_json(tmp_path / "run" / "experiments" / "odd" / "result.json", odd)
    write_json(tmp_path / "run" / "experiments" / "empty" / "result.json", {})
    html = render(read_run_dir(tmp_path / "run"))
    found = sections(html)
    assert found["experiment-history-length"].count("<svg") == 2  # like/ne and seen
    assert "No finished arm to draw yet" in found["experiment-empty"]
    assert "k: 1, 2" in found["experiment-history-length"]


def test_section_ids_are_unique():
    taken = {"ranking"}
    assert [section_id("experiment", n, taken) for n in ("A b", "a-b", "", "ranking")] == [
        "experiment-a-b", "experiment-a-b-2", "experiment-x", "experiment-ranking"]


def _screenshot(chromium, html_path, width, out, home):
    env = {**os.environ, "HOME": str(home)}
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--user-data-dir={home / 'profile'}",
                    "--no-first-run", "--disable-extensions", "--disable-sync",
                    f"--screenshot={out}", f"--window-size={width},2000",
                    html_path.as_uri()], env=env, check=True, capture_output=True,
                   timeout=120)


def test_the_page_renders_in_a_browser_at_phone_and_desktop_width(complete, tmp_path):
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                    "google-chrome"))), None)
    if chromium is None:
        pytest.skip("no chromium binary on PATH (the Debian package `chromium` provides it)")
    from matplotlib.image import imread

    root, html = complete
    page = tmp_path / "report.html"
    page.write_text(html)
    for width in (390, 1280):
        out = tmp_path / f"shot-{width}.png"
        _screenshot(chromium, page, width, out, tmp_path / "home")
        pixels = imread(out)
        assert pixels.shape[:2] == (2000, width)
        assert pixels.std() > 0.05, f"the {width} px screenshot is blank"
        # content reaches across the width (a phone layout wider than the screen would
        # be cut, one that collapses would leave the right half empty)
        ink = (pixels[:, :, :3] < 0.6).any(axis=(0, 2))
        assert ink[: width // 4].any() and ink[width // 2:].any()



def test_a_family_the_config_turned_off_has_no_section(tmp_path):
    write_json(tmp_path / "eval.json", {"retrieval": None, "ranking": {}})
    write_json(tmp_path / "results.json", {
        "ranking": {"seeds": [], "variants": {}, "deltas": {}},
        "retrieval": {"seeds": [], "variants": {}, "deltas": {}}})
    html = render(read_run_dir(tmp_path))
    assert 'id="retrieval"' not in html and 'id="ranking"' in html
