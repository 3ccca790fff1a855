"""The executor an export's options ask for: none for one process, a Ray pool, processes on
devices; contradicting or impossible options refused at the option that names them."""

from __future__ import annotations

import pytest
import torch

from dv365.errors import ConfigError, UsageError
from dv365.export.executor_options import executor_for
from dv365.export.process_executor import ProcessExecutor

PIPELINE_KEYS = {"where": lambda option: f"pipeline.yaml: export.{option.replace('-', '_')}"}


def test_no_worker_options_is_the_export_in_its_own_process():
    assert executor_for() is None and executor_for(workers=1, device="cuda") is None


def test_workers_or_devices_are_processes_on_this_host():
    assert executor_for(workers=2).devices == ["cpu", "cpu"]
    assert executor_for(devices=["cpu", " cpu "]).devices == ["cpu", "cpu"]


@pytest.mark.parametrize("options, key, message", [
    ({"ray": "auto", "devices": ["cpu"]}, "devices", "Ray places its workers itself"),
    ({"gpus_per_worker": 1.0}, "gpus_per_worker", "GPUs per worker are for Ray workers"),
    ({"devices": ["cpu", "cpu"], "workers": 3}, "workers", "3 workers but 2 devices"),
    ({"ray": "head-node"}, "ray", "cannot read 'head-node' as a Ray address"),
])
def test_contradicting_options_are_refused_at_the_key_that_names_them(options, key, message):
    with pytest.raises(UsageError, match=message) as caught:
        executor_for(**options, **PIPELINE_KEYS)
    assert caught.value.where == f"pipeline.yaml: export.{key}"


def test_workers_on_a_gpu_torch_cannot_use_are_named_by_the_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device torch can use") as caught:
        executor_for(workers=2, device="cuda", **PIPELINE_KEYS)
    assert caught.value.where == "pipeline.yaml: export.device"
    assert isinstance(executor_for(workers=2, device="cpu"), ProcessExecutor)
