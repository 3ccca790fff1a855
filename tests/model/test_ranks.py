"""One process per device: the group they form, rank 0's result, a rank's error raised once."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from dv365.errors import ConfigError
from dv365.model.ranks import Ranks, run_on_ranks, torchrun_world


def _sum_of_ranks(ranks: Ranks) -> tuple[int, int, float]:
    value = torch.tensor([float(ranks.rank + 1)])
    dist.all_reduce(value, group=ranks.group)
    return ranks.rank, ranks.world, float(value)


def _refuse_on_rank_one(ranks: Ranks) -> None:
    if ranks.rank == 1:
        raise ConfigError("refused on rank 1", where="train.yaml: devices", hint="a hint")
    dist.barrier()  # rank 0 waits for a rank that never comes: stopped by the parent


def test_ranks_form_one_gloo_group_and_rank_zero_answers():
    assert run_on_ranks(_sum_of_ranks, ("cpu", "cpu"), threads=1) == (0, 2, 3.0)


def test_the_error_of_one_rank_is_raised_as_it_was_and_the_others_stopped():
    with pytest.raises(ConfigError) as info:
        run_on_ranks(_refuse_on_rank_one, ("cpu", "cpu"), threads=1)
    assert info.value.render() == "train.yaml: devices: error: refused on rank 1 (a hint)"


def test_the_world_is_one_outside_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert torchrun_world() == 1
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert torchrun_world() == 4
