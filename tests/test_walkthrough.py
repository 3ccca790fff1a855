"""docs/bring-your-own-log.md, run as written: every shell block and every file it shows.

A folder holding a copy of ``tests/fixtures/`` stands in for the repository root; ``dv365``
is this checkout's command line. The walkthrough passes when each command exits 0; the checks
after it are what a newcomer reads off the outputs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "bring-your-own-log.md"


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    return re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(tmp_path):
    shutil.copytree(ROOT / "tests" / "fixtures", tmp_path / "tests" / "fixtures")
    script = ["set -euo pipefail",
              f'dv365() {{ "{sys.executable}" -m dv365.cli.app "$@"; }}']
    files = 0
    for language, body in blocks(PAGE.read_text()):
        if language == "bash":
            script.append(body)
            continue
        first, _, rest = body.partition("\n")
        name = re.fullmatch(r"# file: (\S+)", first)
        assert name, f"a {language} block of the page names no file"
        # a file shown before the commands that read it: write it at its place in the script
        script.append(f"mkdir -p {Path(name.group(1)).parent} && cat > {name.group(1)} <<'EOF'\n"
                      f"{rest}EOF")
        files += 1
    assert files == 2
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DV365_CACHE_DIR": str(tmp_path / "cache"),
           "DV365_DISABLE_PLUGIN_AUTOLOAD": "1"}
    run = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out, err = run.stdout, run.stderr
    # the three layouts were read, the text files without authors, and said so
    assert "mylog/logs/day1.tsv" in err and "author_id is -1" in err
    assert "OK:" in out and "see no history at gap 1h" in out
    assert "wrote mylog/build/my.ir.json" in out
    assert re.search(r"long_views_all\s+implicit\s+all\s+3\b", out)
    assert "trained 20 steps" in out and "best" in out
    assert (tmp_path / "mylog" / "runs" / "first" / "checkpoints" / "best.pt").exists()
    events = pq.read_table(tmp_path / "mylog" / "data" / "events")
    assert -1 in set(events.column("author_id").to_pylist())
