"""The retrieval control's loss and metrics (dv365.downstream.retrieval): the log-Q corrected
in-batch softmax by hand, the duplicate mask, ItemFrequency's counts and floor, and the
catalogue ranks against a NumPy argsort."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dv365.downstream.retrieval import (
    ItemFrequency,
    hit_rates,
    ndcg_at,
    sampled_softmax_logits,
    sampled_softmax_loss,
    target_ranks,
)

# Two users, two positives, d = 2: every dot product is easy to read off.
U = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
V = torch.tensor([[3.0, 1.0], [1.0, 1.0]])  # <u0,v0>=3 <u0,v1>=1 <u1,v0>=2 <u1,v1>=2


def _cross_entropy_by_hand(rows):
    """Mean over rows of ``-log softmax(row)[positive]``, rows as (logits, positive)."""
    return sum(math.log(sum(math.exp(x) for x in logits)) - logits[i]
               for logits, i in rows) / len(rows)


def test_the_loss_is_the_corrected_in_batch_cross_entropy_computed_by_hand():
    log_q = torch.tensor([math.log(0.75), math.log(0.25)])
    loss = sampled_softmax_loss(U, V, log_q, temperature=0.5, normalize=False)
    lq = [math.log(0.75), math.log(0.25)]
    expected = _cross_entropy_by_hand([
        ([3 / 0.5 - lq[0], 1 / 0.5 - lq[1]], 0),
        ([2 / 0.5 - lq[0], 2 / 0.5 - lq[1]], 1),
    ])
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_normalize_scores_cosine_similarity():
    log_q = torch.tensor([-1.0, -2.0])
    cosine = sampled_softmax_loss(U, V, log_q, temperature=0.1)
    unit = sampled_softmax_loss(U / U.norm(dim=1, keepdim=True), V / V.norm(dim=1, keepdim=True),
                                log_q, temperature=0.1, normalize=False)
    assert cosine.item() == pytest.approx(unit.item(), rel=1e-6)
    raw = sampled_softmax_loss(U, V, log_q, temperature=0.1, normalize=False)
    assert raw.item() != pytest.approx(cosine.item(), rel=1e-3)
    # Scaling a user's vector changes nothing once normalized.
    scaled = sampled_softmax_loss(U * torch.tensor([[5.0], [0.1]]), V, log_q, temperature=0.1)
    assert scaled.item() == pytest.approx(cosine.item(), rel=1e-5)


def test_the_log_q_correction_lowers_a_popular_items_logit_in_every_row():
    torch.manual_seed(0)
    u, v = torch.randn(4, 3), torch.randn(4, 3)
    flat = sampled_softmax_logits(u, v, torch.zeros(4), temperature=0.2)
    popular = torch.log(torch.tensor([0.7, 0.1, 0.1, 0.1]))
    corrected = sampled_softmax_logits(u, v, popular, temperature=0.2)
    torch.testing.assert_close(corrected, flat - popular[None, :])
    # Relative to the others, item 0's column drops by log(0.7 / 0.1) in every row ...
    shift = (corrected - flat)[:, 0] - (corrected - flat)[:, 1]
    torch.testing.assert_close(shift, torch.full((4,), -math.log(7.0)))
    # ... so it takes less of each softmax where it is a negative and more loss where positive.
    p_flat, p_corr = flat.softmax(1), corrected.softmax(1)
    assert (p_corr[:, 0] < p_flat[:, 0]).all()


def test_the_correction_raises_the_loss_of_a_popular_positive_and_lowers_it_as_a_negative():
    # All scores equal: without correction every row's loss is log B.
    u, v = torch.ones(3, 2), torch.ones(3, 2)
    flat = sampled_softmax_loss(u, v, torch.zeros(3), temperature=1.0)
    assert flat.item() == pytest.approx(math.log(3))
    log_q = torch.log(torch.tensor([0.8, 0.1, 0.1]))
    rows = -sampled_softmax_logits(u, v, log_q, temperature=1.0).log_softmax(1).diagonal()
    assert rows[0].item() > math.log(3) > rows[1].item()
    assert rows[1].item() == pytest.approx(rows[2].item())


def test_duplicates_of_the_positive_are_masked_out_of_the_negatives():
    torch.manual_seed(1)
    u, v = torch.randn(3, 4), torch.randn(3, 4)
    v[2] = v[0]  # the same item, positive of rows 0 and 2
    ids = torch.tensor([5, 7, 5])
    log_q = torch.tensor([-1.0, -2.0, -1.0])
    logits = sampled_softmax_logits(u, v, log_q, item_ids=ids)
    assert (logits[[0, 2], [2, 0]] == float("-inf")).all()
    assert torch.isfinite(logits.diagonal()).all()
    assert torch.isfinite(logits[1]).all()  # row 1's positive has no duplicate
    plain = sampled_softmax_logits(u, v, log_q)
    expected = _cross_entropy_by_hand([
        (plain[0, [0, 1]].tolist(), 0), (plain[1].tolist(), 1), (plain[2, [1, 2]].tolist(), 1),
    ])
    masked = sampled_softmax_loss(u, v, log_q, item_ids=ids)
    assert masked.item() == pytest.approx(expected, rel=1e-5)
    assert masked.item() < sampled_softmax_loss(u, v, log_q).item()


def test_a_batch_of_one_item_has_no_negatives_and_zero_loss():
    u, v = torch.randn(3, 2), torch.randn(3, 2)
    loss = sampled_softmax_loss(u, v, torch.zeros(3), item_ids=torch.tensor([4, 4, 4]))
    assert loss.item() == 0.0


@pytest.mark.parametrize("normalize", [True, False])
def test_gradients_reach_both_towers_and_stay_finite_with_the_mask(normalize):
    torch.manual_seed(2)
    u = torch.randn(6, 4, requires_grad=True)
    v = torch.randn(6, 4, requires_grad=True)
    ids = torch.tensor([1, 2, 1, 3, 3, 4])
    loss = sampled_softmax_loss(u, v, torch.randn(6), item_ids=ids, normalize=normalize)
    loss.backward()
    for grad in (u.grad, v.grad):
        assert torch.isfinite(grad).all() and (grad.abs().sum(1) > 0).all()


def test_a_gradient_step_lowers_the_loss():
    torch.manual_seed(3)
    u = torch.randn(8, 4, requires_grad=True)
    v = torch.randn(8, 4)
    log_q = torch.randn(8)
    before = sampled_softmax_loss(u, v, log_q)
    before.backward()
    with torch.no_grad():
        after = sampled_softmax_loss(u - 1e-3 * u.grad, v, log_q)
    assert after.item() < before.item()


@pytest.mark.parametrize("kwargs, match", [
    ({"user": torch.zeros(2, 3), "items": torch.zeros(2, 4)}, "must both be"),
    ({"item_log_q": torch.zeros(3)}, "item_log_q"),
    ({"item_ids": torch.zeros(3, dtype=torch.int64)}, "item_ids"),
    ({"temperature": 0.0}, "temperature"),
])
def test_the_loss_refuses_wrong_shapes_and_temperatures(kwargs, match):
    args = {"user": U, "items": V, "item_log_q": torch.zeros(2), **kwargs}
    with pytest.raises(ValueError, match=match):
        sampled_softmax_loss(args.pop("user"), args.pop("items"), args.pop("item_log_q"), **args)


# ItemFrequency

def test_item_frequency_is_the_count_over_the_total_with_a_floor_for_unseen_items():
    freq = ItemFrequency(np.array([10, 10, 10, 3, 7, 7, 10, 3]))
    got = freq.log_q(torch.tensor([10, 3, 7, 99, -1, 0]))
    assert got.dtype == torch.float32
    expected = np.log([4 / 8, 2 / 8, 2 / 8, 1 / 8, 1 / 8, 1 / 8])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    assert freq.total == 8


def test_item_frequency_floor_lifts_rare_items_and_keeps_the_shape_of_the_query():
    freq = ItemFrequency(torch.tensor([1, 2, 2, 2, 2, 2, 2, 2]), floor=3.0)
    got = freq.log_q(np.array([[1, 2], [5, 1]]))
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got.numpy(), np.log([[3 / 8, 7 / 8], [3 / 8, 3 / 8]]), rtol=1e-6)


def test_a_popular_item_gets_the_larger_log_q_and_feeds_the_loss():
    freq = ItemFrequency(np.array([0] * 90 + [1] * 10))
    batch = torch.tensor([0, 1])
    log_q = freq.log_q(batch)
    assert log_q[0] > log_q[1]
    loss = sampled_softmax_loss(U, V, log_q, item_ids=batch)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("ids, floor", [
    (np.array([], dtype=np.int64), 1.0), (np.array([1.5, 2.0]), 1.0),
    (np.array([[1, 2]]), 1.0), (np.array([1, 2]), 0.0),
])
def test_item_frequency_refuses_what_it_cannot_count(ids, floor):
    with pytest.raises(ValueError):
        ItemFrequency(ids, floor=floor)


# Catalogue metrics against a plain NumPy reference

def _reference_ranks(user, catalogue, targets):
    """The target's position when the catalogue is sorted by descending score, the target
    first among its ties (NumPy's lexsort, last key primary)."""
    scores = np.asarray(user, dtype=np.float64) @ np.asarray(catalogue, dtype=np.float64).T
    ranks = []
    for q, t in enumerate(targets):
        order = np.lexsort((np.arange(scores.shape[1]) != t, -scores[q]))
        ranks.append(int(np.flatnonzero(order == t)[0]))
    return np.array(ranks)


@st.composite
def _retrieval_case(draw):
    q = draw(st.integers(1, 12))
    i = draw(st.integers(1, 15))
    d = draw(st.integers(1, 3))
    # Small integers: exact dot products in float32 and many ties (duplicate items included).
    values = st.integers(-2, 2)
    user = np.array(draw(st.lists(values, min_size=q * d, max_size=q * d))).reshape(q, d)
    catalogue = np.array(draw(st.lists(values, min_size=i * d, max_size=i * d))).reshape(i, d)
    targets = np.array(draw(st.lists(st.integers(0, i - 1), min_size=q, max_size=q)))
    chunk = draw(st.integers(1, q + 2))
    ks = tuple(draw(st.lists(st.integers(1, i + 2), min_size=1, max_size=3, unique=True)))
    return user, catalogue, targets, chunk, ks


@settings(max_examples=150, deadline=None)
@given(_retrieval_case())
def test_hits_match_a_numpy_argsort_reference(case):
    user, catalogue, targets, chunk, ks = case
    reference = _reference_ranks(user, catalogue, targets)
    ranks = target_ranks(torch.tensor(user, dtype=torch.float32),
                         torch.tensor(catalogue, dtype=torch.float32),
                         torch.tensor(targets), chunk=chunk)
    np.testing.assert_array_equal(ranks, reference)
    hits = hit_rates(user.astype(np.float64), catalogue.astype(np.float64), targets, ks,
                     chunk=chunk)
    assert sorted(hits) == sorted(ks)
    for k in ks:
        assert hits[k].dtype == np.bool_ and hits[k].shape == targets.shape
        np.testing.assert_array_equal(hits[k], reference < k)
    k = ks[0]
    np.testing.assert_allclose(ndcg_at(user, catalogue, targets, k, chunk=chunk),
                               np.where(reference < k, 1 / np.log2(reference + 2.0), 0.0))


def test_ties_count_for_the_target():
    catalogue = np.array([[1.0], [1.0], [1.0], [2.0]])  # items 0-2 tie, item 3 scores higher
    user = np.array([[1.0], [1.0]])
    hits = hit_rates(user, catalogue, np.array([2, 3]), ks=(1, 2))
    np.testing.assert_array_equal(hits[1], [False, True])
    np.testing.assert_array_equal(hits[2], [True, True])  # only item 3 is strictly higher
    np.testing.assert_array_equal(target_ranks(user, catalogue, np.array([0, 1])), [1, 1])


def test_ndcg_is_one_at_the_top_and_decays_with_the_rank():
    catalogue = np.array([[3.0], [2.0], [1.0]])
    got = ndcg_at(np.ones((3, 1)), catalogue, np.array([0, 1, 2]), k=2)
    np.testing.assert_allclose(got, [1.0, 1 / math.log2(3), 0.0])


def test_hit_rates_take_numpy_and_torch_and_chunking_changes_nothing():
    rng = np.random.default_rng(0)
    user, catalogue = rng.normal(size=(50, 8)), rng.normal(size=(200, 8))
    targets = rng.integers(0, 200, 50)
    whole = hit_rates(user, catalogue, targets, ks=(1, 10, 50))
    chunked = hit_rates(torch.from_numpy(user).float(), torch.from_numpy(catalogue).float(),
                        torch.from_numpy(targets), ks=(1, 10, 50), chunk=7)
    for k in (1, 10, 50):
        np.testing.assert_array_equal(whole[k], chunked[k])
    assert whole[1].sum() <= whole[10].sum() <= whole[50].sum()


@pytest.mark.parametrize("args, kwargs, match", [
    ((np.zeros((2, 3)), np.zeros((4, 2)), np.zeros(2, dtype=int)), {}, "catalogue"),
    ((np.zeros((2, 3)), np.zeros((4, 3)), np.zeros(3, dtype=int)), {}, "targets"),
    ((np.zeros((2, 3)), np.zeros((4, 3)), np.array([0, 4])), {}, "row indices"),
    ((np.zeros((2, 3)), np.zeros((4, 3)), np.array([0, -1])), {}, "row indices"),
    ((np.zeros((2, 3)), np.zeros((4, 3)), np.array([0, 1])), {"chunk": 0}, "chunk"),
    ((np.zeros((2, 3)), np.zeros((4, 3)), np.array([0, 1])), {"ks": (0, 1)}, "k"),
])
def test_hit_rates_refuse_wrong_shapes_and_targets(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        hit_rates(*args, **kwargs)
