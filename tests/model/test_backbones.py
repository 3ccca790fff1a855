"""Backbones (DLRM from torchrec parts, Siamese) and the multi-task loss."""

import pytest
import torch
import torch.nn.functional as F
from torchrec.models.dlrm import InteractionArch, OverArch

from dv365.model.backbones.options import BackboneInputs, ItemFeature
from dv365.model.tasks import Task, predictions, task_losses
from dv365.plugins import load_plugins

REGISTRY = load_plugins(autoload=False).backbones
TASKS = (Task("like", "binary"), Task("share", "binary"), Task("watch_time", "regression", True))
ITEMS = (ItemFeature("media_id", 50), ItemFeature("surface", 4))


def build(name, user_vectors, num_dense=3):
    reg = REGISTRY.get(name)
    inputs = BackboneInputs(user_vectors, 8, ITEMS, num_dense, TASKS)
    return reg.factory(reg.options(embedding_dim=4), inputs=inputs)


def batch(b=5, num_dense=3, user_vectors=6):
    sparse = {"media_id": torch.randint(0, 50, (b,)), "surface": torch.randint(0, 4, (b,))}
    user = torch.randn(b, user_vectors, 8) if user_vectors else None
    return user, sparse, torch.randn(b, num_dense)


@pytest.mark.parametrize("name", ["dlrm", "siamese"])
@pytest.mark.parametrize("user_vectors", [6, 0])
@pytest.mark.parametrize("num_dense", [3, 0])
def test_backbone_gives_one_output_per_task(name, user_vectors, num_dense):
    model = build(name, user_vectors, num_dense)
    user, sparse, dense = batch(num_dense=num_dense, user_vectors=user_vectors)
    out = model(user, sparse, dense)
    assert out.shape == (5, 3)
    out.sum().backward()


def test_dlrm_is_built_from_torchrec_parts_and_sees_the_user_vectors():
    model = build("dlrm", 6)
    assert isinstance(model.interaction, InteractionArch) and isinstance(model.over_arch, OverArch)
    user, sparse, dense = batch()
    base = model(user, sparse, dense)
    assert not torch.allclose(base, model(user + 1.0, sparse, dense))


def test_item_tables_have_sparse_gradients():
    model = build("dlrm", 6)
    user, sparse, dense = batch()
    model(user, sparse, dense).sum().backward()
    assert model.items.tables["media_id"].weight.grad.is_sparse


def test_loss_is_sum_of_bce_plus_alpha_mse():
    outputs = torch.tensor([[0.3, -1.0, 2.0], [1.2, 0.5, 0.1]])
    labels = torch.tensor([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    total, per_task = task_losses(outputs, labels, TASKS, alpha=0.5)
    bce_like = F.binary_cross_entropy_with_logits(outputs[:, 0], labels[:, 0])
    bce_share = F.binary_cross_entropy_with_logits(outputs[:, 1], labels[:, 1])
    mse = ((outputs[:, 2] - torch.log1p(labels[:, 2])) ** 2).mean()
    torch.testing.assert_close(total, bce_like + bce_share + 0.5 * mse)
    torch.testing.assert_close(per_task["watch_time"], mse)
    probs = predictions(outputs, TASKS)
    torch.testing.assert_close(probs[:, 0], torch.sigmoid(outputs[:, 0]))
    torch.testing.assert_close(probs[:, 2], outputs[:, 2])
