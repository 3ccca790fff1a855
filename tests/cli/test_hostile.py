"""Hostile specs through ``dv365 compile``: the fast cases of the standing probe
(``scripts/probe_cli.py``; counts in docs/hardening.md).

Whatever the spec, compile ends in exit 0, or in exit 2 with located ``error:`` lines: never
an internal error, a traceback or a hang.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dv365.cli import app as cli_app

ROOT = Path(__file__).resolve().parents[2]
HEAD = b"table m: media_id, rows 10, dim 4\n"

CRAFTED = {
    "nested 10,000 deep": b"x = " + b"(" * 10_000 + b"1" + b")" * 10_000,
    "include a folder": b'include "sub"\n',
    "include an overlong name": b'include "' + b"a" * 300 + b'.slice"\n',
    "include itself": b'include "case.slice"\n',
    "include a NUL": b'include "a\\u0000b"\n',
    "invalid UTF-8": b"slice \xff\xfe: from implicit",
    "UTF-16": "slice a: from implicit".encode("utf-16"),
    "empty": b"",
    "2^41 rows": HEAD.replace(b"rows 10", b"rows 2^41") +
                 b"slice a: from implicit pool media_id into m",
    "huge literal": HEAD + b"slice a: from implicit where dwell_time > 1e400 pool media_id "
                           b"into m",
    "over of 10,001 windows": HEAD + b"slice s_{window}: from implicit pool media_id into m "
                              b"over " + ", ".join(f"{i}m" for i in range(1, 10_002)).encode(),
}


def _compile(tmp_path: Path, data: bytes, capsys) -> tuple[int, str]:
    (tmp_path / "sub").mkdir(exist_ok=True)
    spec = tmp_path / "case.slice"
    spec.write_bytes(data)
    rc = cli_app.main(["compile", str(spec), "-o", str(tmp_path / "build")])
    return rc, capsys.readouterr().err


def _assert_clean(rc: int, err: str, spec: Path) -> None:
    assert "internal error" not in err and "Traceback" not in err
    assert rc in (0, 2), err
    if rc:
        first = err.splitlines()[0]
        assert first.startswith(f"{spec}:") and ": error: " in first, first


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_crafted_spec_is_a_located_error(name, tmp_path, capsys):
    rc, err = _compile(tmp_path, CRAFTED[name], capsys)
    _assert_clean(rc, err, tmp_path / "case.slice")
    assert rc == 2


def _mutations(seed: int, count: int):
    rng = random.Random(seed)
    base = (ROOT / "slices" / "minimal.slice").read_bytes()
    words = [b"slice", b"for", b"{", b"}", b"[", b"]", b"(", b")", b",", b":", b"..", b"==",
             b"1e308", b"{window}", b"over", b"weighted", b"by", b"\xc2\xb2", b"\x00", b'"']
    for _ in range(count):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            roll = rng.random()
            if roll < 0.4:
                data[i] ^= 1 << rng.randrange(8)
            elif roll < 0.7:
                del data[i:i + rng.randint(1, 30)]
            else:
                data[i:i] = b" " + rng.choice(words) + b" "
        yield bytes(data)


def test_mutated_shipped_specs_compile_or_fail_located(tmp_path, capsys):
    for i, data in enumerate(_mutations(seed=16, count=40)):
        folder = tmp_path / str(i)
        folder.mkdir()
        rc, err = _compile(folder, data, capsys)
        _assert_clean(rc, err, folder / "case.slice")
