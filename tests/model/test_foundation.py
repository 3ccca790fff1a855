"""The foundation model (dv365.model.foundation): the exported user embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dv365.model.config import load_config
from dv365.model.foundation import embed_users
from dv365.model.train import Trainer
from dv365.plugins import load_plugins
from tests.model.conftest import write_config

PLUGINS = load_plugins(autoload=False)


@pytest.mark.parametrize("view", ["token", "dim"])
def test_exported_embeddings_keep_users_apart_in_any_batching(tmp_path, tiny_data,
                                                              tiny_spec_file, view):
    config = write_config(tmp_path, tiny_data, tiny_spec_file,
                          encoder={"type": "fsa", "view": view})
    trainer = Trainer(load_config(config), plugins=PLUGINS)
    users = np.arange(min(12, trainer.store.num_users))
    when = int(trainer.store.ts.max()) + 1
    # The reference kernel: no code generation in a test about batching.
    batched = embed_users(trainer.model, trainer.ir, trainer.store, users, when,
                          batch_size=5, backend="reference")
    encoder = trainer.model.encoder
    assert batched.shape == (len(users), encoder.num_outputs * encoder.dim)
    one_by_one = torch.cat([embed_users(trainer.model, trainer.ir, trainer.store, [u], when,
                                        backend="reference") for u in users])
    torch.testing.assert_close(batched, one_by_one, rtol=1e-4, atol=1e-5)
    assert batched.double().std(0).median() > 1e-3  # users differ


def test_a_model_without_a_user_tower_has_no_embedding(tmp_path, tiny_data, tiny_spec_file):
    trainer = Trainer(load_config(write_config(tmp_path, tiny_data, tiny_spec_file,
                                               encoder=None)), plugins=PLUGINS)
    with pytest.raises(ValueError, match="without a user tower"):
        embed_users(trainer.model, trainer.ir, trainer.store, [0], 0)
