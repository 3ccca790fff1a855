"""The ranking control (HSTU + DLRM), the two towers, and how each adapter plugs into them."""

import numpy as np
import pytest
import torch

from dv365.data.vocabulary import Vocabulary
from dv365.downstream.adapters.build import build_adapter
from dv365.downstream.catalogue import Catalogue
from dv365.downstream.fit import epoch_batches, fit
from dv365.downstream.hstu_options import HstuOptions
from dv365.downstream.inputs import BatchBuilder
from dv365.downstream.ranking import HstuRanker, rank_predictions, ranking_loss
from dv365.downstream.retrieval import ItemFrequency
from dv365.downstream.two_tower import TwoTower, retrieval_hits, retrieval_loss
from dv365.model.backbones.options import DLRMOptions
from dv365.model.config import Optimizers
from dv365.model.examples import item_features
from dv365.model.tasks import Task
from tests.downstream.conftest import ITEM_ROWS

HSTU = HstuOptions(dim=8, layers=1, max_len=12)
N, D = 3, 4  # the stored embedding's shape


def _vocab_sizes(store, meta):
    return dict(num_actions=len(Vocabulary.of_store(store).values("action")),
                num_media_types=len(meta.values("media_type")))


def _ranker(store, meta, examples, adapter=None):
    tasks = tuple(Task(t, k, k == "regression") for t, k in meta.tasks.items())
    features = tuple(f for f in item_features(meta, ITEM_ROWS) if f.name != "media_id")
    torch.manual_seed(0)
    model = HstuRanker(hstu=HSTU, dlrm=DLRMOptions(embedding_dim=8), recent=10,
                       item_rows=ITEM_ROWS, item_features=features,
                       num_dense=examples.dense.shape[1], tasks=tasks, adapter=adapter,
                       **_vocab_sizes(store, meta))
    return model, tasks


def _dv365(batch, found=None):
    g = torch.Generator().manual_seed(1)
    found = torch.ones(len(batch), dtype=torch.bool) if found is None else found
    return torch.randn(len(batch), N, D, generator=g), found


@pytest.mark.parametrize("adapter", [None, "linear", "hstu_prepend", "gatenet"])
def test_the_ranker_predicts_every_task_with_each_adapter(downstream_data, adapter):
    _, store, examples, meta = downstream_data
    built = None if adapter is None else build_adapter({"type": adapter}, num_vectors=N,
                                                       dim=D, out_dim=HSTU.dim)
    model, tasks = _ranker(store, meta, examples, built)
    batch = BatchBuilder(store, examples, recent=10, item_rows=ITEM_ROWS)(np.arange(16))
    out = model(batch, None if adapter is None else _dv365(batch))
    assert out.shape == (16, len(tasks)) and torch.isfinite(out).all()
    ranking_loss(model, tasks, 1.0)(batch, None if adapter is None else _dv365(batch)).backward()
    assert all(p.grad is not None for p in model.user.hstu.parameters())


def test_a_user_without_an_embedding_gets_the_learned_missing_input(downstream_data):
    _, store, examples, meta = downstream_data
    adapter = build_adapter({"type": "linear"}, num_vectors=N, dim=D, out_dim=HSTU.dim)
    model, _ = _ranker(store, meta, examples, adapter)
    model.eval()
    batch = BatchBuilder(store, examples, recent=10, item_rows=ITEM_ROWS)(np.arange(4))
    vectors, _ = _dv365(batch)
    missing = torch.tensor([True, False, True, False])
    a = model(batch, (vectors, ~missing))
    b = model(batch, (torch.zeros_like(vectors) + 100.0 * missing.view(-1, 1, 1), ~missing))
    # Found users read their vectors; the others read `missing`, whatever the store sent.
    assert torch.allclose(a[missing], b[missing])
    assert not torch.allclose(a[~missing], b[~missing])


def test_a_model_with_an_adapter_refuses_to_run_without_the_dv365_input(downstream_data):
    _, store, examples, meta = downstream_data
    adapter = build_adapter({"type": "linear"}, num_vectors=N, dim=D, out_dim=HSTU.dim)
    model, _ = _ranker(store, meta, examples, adapter)
    batch = BatchBuilder(store, examples, recent=10, item_rows=ITEM_ROWS)(np.arange(2))
    with pytest.raises(ValueError, match="DV365 input"):
        model(batch, None)


def test_control_and_treatment_share_their_initial_user_tower_when_seeded_alike(downstream_data):
    _, store, examples, meta = downstream_data
    with torch.random.fork_rng():
        torch.manual_seed(99)
        adapter = build_adapter({"type": "linear"}, num_vectors=N, dim=D, out_dim=HSTU.dim)
    control, _ = _ranker(store, meta, examples)
    treated, _ = _ranker(store, meta, examples, adapter)
    for (name, a), (_, b) in zip(control.user.hstu.named_parameters(),
                                 treated.user.hstu.named_parameters()):
        assert torch.equal(a, b), name


def test_fit_sees_the_same_batches_for_the_same_seed_and_learns(downstream_data):
    _, store, examples, meta = downstream_data
    assert [list(b) for b in epoch_batches(10, 4, 3, 0)] == \
        [list(b) for b in epoch_batches(10, 4, 3, 0)]
    assert sorted(np.concatenate(epoch_batches(10, 4, 3, 1))) == list(range(10))
    model, tasks = _ranker(store, meta, examples)
    builder = BatchBuilder(store, examples, recent=10, item_rows=ITEM_ROWS)
    before = ranking_loss(model, tasks, 1.0)(builder(np.arange(len(examples))), None).item()
    result = fit(model, ranking_loss(model, tasks, 1.0), builder, batch_size=64, epochs=3,
                 optimizer=Optimizers(), seed=0)
    after = ranking_loss(model, tasks, 1.0)(builder(np.arange(len(examples))), None).item()
    assert result.steps == 3 * -(-len(examples) // 64) and result.examples == 3 * len(examples)
    assert after < before
    preds = rank_predictions(model, tasks, builder, batch_size=50)
    assert preds.shape == (len(examples), len(tasks))
    binary = [k for k, t in enumerate(tasks) if t.kind == "binary"]
    assert ((preds[:, binary] > 0) & (preds[:, binary] < 1)).all()


@pytest.mark.parametrize("adapter", [None, "linear", "gatenet"])
def test_two_towers_train_and_score_the_whole_catalogue(downstream_data, adapter):
    _, store, examples, meta = downstream_data
    catalogue = Catalogue.of(store, examples, ITEM_ROWS)
    tasks = [t for t, k in meta.tasks.items() if k == "binary" and t != "skip"][:3]
    index = [list(meta.tasks).index(t) for t in tasks]
    from dataclasses import replace

    ex = replace(examples, labels=examples.labels[:, index])
    built = None if adapter is None else build_adapter({"type": adapter}, num_vectors=N,
                                                       dim=D, out_dim=HSTU.dim)
    torch.manual_seed(0)
    model = TwoTower(hstu=HSTU, recent=10, item_rows=ITEM_ROWS, num_tasks=len(tasks),
                     hidden=(16,), adapter=built, **_vocab_sizes(store, meta))
    builder = BatchBuilder(store, ex, recent=10, item_rows=ITEM_ROWS, catalogue=catalogue)
    frequencies = [ItemFrequency(builder.targets) for _ in tasks]
    loss = retrieval_loss(model, catalogue, frequencies, temperature=0.1)
    batch = builder(np.arange(len(ex)))
    value = loss(batch, None if built is None else _dv365(batch))
    assert torch.isfinite(value) and value.item() > 0
    value.backward()
    embeddings = None
    if built is not None:
        class Fixed:  # the store's role: the same vectors for a user every time
            def for_batch(self, batch):
                g = torch.Generator().manual_seed(2)
                table = torch.randn(int(store.user_ids.max()) + 1, N, D, generator=g)
                ids = torch.as_tensor(np.asarray(batch.user_ids))
                return table[ids], torch.ones(len(ids), dtype=torch.bool)
        embeddings = Fixed()
    hits = retrieval_hits(model, catalogue, builder, num_tasks=len(tasks), batch_size=64,
                          embeddings=embeddings)
    for k, per_k in enumerate(hits):
        positives = int((ex.labels[:, k] > 0.5).sum())
        assert per_k[1].shape == per_k[10].shape == (positives,)
        assert (per_k[1] <= per_k[10]).all()
