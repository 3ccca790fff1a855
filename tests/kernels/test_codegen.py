"""Generated kernel modules: readable source pinned by a golden file, cached by what they
depend on, written atomically."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dv365.kernels import codegen
from dv365.kernels.cache import CACHES
from dv365.kernels.cuda_tuning import DEFAULT_TUNING, CudaTuning
from dv365.kernels.plan import build_plan
from dv365.slices.compile import compile_spec

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden" / "minimal_cpu_f32.py.golden"


@pytest.fixture
def minimal_plan():
    return build_plan(compile_spec(ROOT / "slices" / "minimal.slice"))


def test_cpu_source_of_minimal_slice_is_pinned(minimal_plan, monkeypatch):
    # The readable code docs/kernels.md shows. To accept an intended change:
    # DV365_UPDATE_GOLDEN=1 pytest tests/kernels/test_codegen.py
    import os

    monkeypatch.delenv("DV365_KERNEL_SERIAL")
    source = codegen.generate(minimal_plan, "cpu", "f32")
    if os.environ.get("DV365_UPDATE_GOLDEN"):
        GOLDEN.write_text(source)
    assert source == GOLDEN.read_text()


def test_the_docs_show_lines_of_the_pinned_source_in_order():
    # docs/kernels.md quotes the CPU fused kernel of minimal.slice, eliding with "...":
    # every quoted line (its comment aside) stands in the pinned source, in order
    docs = (ROOT / "docs" / "kernels.md").read_text()
    block = docs.split("```python\n", 1)[1].split("```", 1)[0]
    golden = [line.strip() for line in GOLDEN.read_text().splitlines()]
    at = 0
    for line in block.splitlines():
        code = re.sub(r"\s+# .*$", "", line).strip()
        if not code or code == "...":
            continue
        while at < len(golden) and golden[at] != code:
            at += 1
        assert at < len(golden), f"docs/kernels.md quotes a line the kernel lacks: {code!r}"
        at += 1


def test_the_serial_build_is_the_same_source_without_prange(minimal_plan, monkeypatch):
    monkeypatch.delenv("DV365_KERNEL_SERIAL")
    parallel = codegen.generate(minimal_plan, "cpu", "f32")
    monkeypatch.setenv("DV365_KERNEL_SERIAL", "1")
    serial = codegen.generate(minimal_plan, "cpu", "f32")
    assert "prange(" not in serial and "parallel=False" in serial
    assert serial == parallel.replace("parallel=True", "parallel=False").replace(
        "in prange(", "in range(")


def test_module_tags_name_backend_variant_element_and_tuning(minimal_plan, monkeypatch):
    tag = codegen.module_tag
    small = CudaTuning(staged_entries=8)
    assert tag(minimal_plan, "cuda", "f32", tuning=small) != tag(minimal_plan, "cuda", "f32")
    assert tag(minimal_plan, "cuda", "f32", simulator=True) != tag(minimal_plan, "cuda", "f32")
    assert tag(minimal_plan, "cuda", "bf16") != tag(minimal_plan, "cuda", "f32")
    serial = tag(minimal_plan, "cpu", "f32")
    monkeypatch.delenv("DV365_KERNEL_SERIAL")
    assert tag(minimal_plan, "cpu", "f32") != serial
    assert DEFAULT_TUNING.key() in tag(minimal_plan, "cuda", "f32")


def test_modules_are_cached_by_tag_and_written_to_the_cache_dir(minimal_plan, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("DV365_CACHE_DIR", str(tmp_path))
    CACHES.modules.clear()
    first = codegen.load(minimal_plan, "cpu", "f32")
    assert codegen.load(minimal_plan, "cpu", "f32") is first
    files = list((tmp_path / "kernels").glob("dv365_kernel_*.py"))
    assert [f.read_text() for f in files] == [codegen.generate(minimal_plan, "cpu", "f32")]
    assert not [p for p in (tmp_path / "kernels").iterdir() if p.name.startswith(".")]


def test_a_different_tuning_generates_a_different_cuda_module(minimal_plan):
    default = codegen.generate(minimal_plan, "cuda", "f32", simulator=True)
    small = codegen.generate(minimal_plan, "cuda", "f32", simulator=True,
                             tuning=CudaTuning(tile_events=5, staged_entries=2))
    assert default != small
    assert "hi - 5)" in small and "hi - 128)" in default
