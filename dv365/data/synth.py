"""The long-history generator behind ``dv365 synth``: the project's default data.

It writes a UniTi events dataset, an examples dataset and the ground truth of a synthetic
world built to behave like the setting of the DV365 paper:

* **Users** have history lengths drawn from a log-normal fitted to a target mean and capped at
  a maximum (``--profile paper``: mean about 40,000, cap 70,000), spread over one year that
  ends at :data:`PERIOD_END_MS` (2026-01-01 00:00 UTC). About a quarter of the events are
  explicit actions, the rest implicit impressions with a dwell time.
* **Stable interests**: each user has a handful of topics with weights and a few favourite
  authors in them, fixed for the whole year. They are a *minority* of what the user is shown
  (10-25%) but they carry most of the deep engagement (long dwell, likes, explicit actions).
* **Emerging interests**: the year is cut into windows of 2-7 days per user; each window has a
  trending topic that takes a large share of the exposure and then disappears. Bursts give
  some engagement, much less than stable interests.
* Everything else is **popular** content: Zipf-skewed topics, authors and items.
* **Affinity** of a user for an item at time t is ``base + stable(topic) + favourite(author) +
  burst(topic, t) + quality(item)``. Dwell time, the chance that an event is an explicit
  action, which action, and the examples' labels are all functions of that affinity (and of
  the video duration), so events and labels come from one model.
* **Examples** are impressions over the final ``--days`` days, labelled from the affinity at
  the request time. Recent history is dominated by the current burst, so a model that sees
  only the last few hundred events mostly misses the stable interest; the whole year reveals
  it. ``truth/`` holds each user's planted interests for checking what an embedding learned.

Speed: users are generated in *blocks* of about a quarter million events; per-user state is drawn
with NumPy, the per-event model runs in compiled kernels (:mod:`dv365.data.synth_kernels`,
one pass, counter-based random numbers, continuous variates through quantile tables), Arrow
columns wrap the kernels' output without copies, and a writer thread encodes Parquet while
the next block is generated. Determinism: the catalogue, a pilot sample and each block draw
from their own stream of ``SeedSequence(seed)``; the block size depends only on the
arguments, so the same arguments give byte-identical output.
"""

from __future__ import annotations

import json
import math
import queue
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dv365.atomic_write import staged_directory
from dv365.data.dataset import CHECKSUMS, DEFAULT_ROWS_PER_FILE, DatasetWriter
from dv365.data.schema import (
    DEFAULT_BINARY_TASKS,
    DEFAULT_REGRESSION_TASKS,
    DEFAULT_VOCAB,
    EXPLICIT,
    TIMELINES,
    TS_TYPE,
    DatasetMeta,
    events_schema,
    examples_schema,
)
from dv365.data.synth_kernels import (
    CHOICE_BITS,
    ITEM_DTYPE,
    CatalogueArrays,
    Constants,
    Tables,
    UserArrays,
    affinity_centres,
    allocate_impressions,
    duration_bucket,
    duration_centres,
    event_times,
    run_impressions,
)
from dv365.data.synth_world import (
    CAROUSEL,
    ITEM_SKEW,
    LUT_SIZE,
    PHOTO,
    VIDEO,
    Catalogue,
    build_catalogue,
    exponential_lut,
    inverse_cdf_lut,
    normal_lut,
)
from dv365.durations import DAY_MS
from dv365.errors import UsageError

# The period is fixed so that the data does not depend on when it is generated.
PERIOD_END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PERIOD_DAYS = 365
PERIOD_START_MS = PERIOD_END_MS - PERIOD_DAYS * DAY_MS  # 2025-01-01T00:00:00Z

# Events generated per block of users, the unit of randomness and of writing. Small enough
# that filling and draining the generate/write pipeline costs little (a quarter million
# events: 10.3 M events/s end to end, against 8-9 with a million; docs/benchmarks.md).
BLOCK_EVENTS = 1 << 18
# The dense (user, topic) affinity table of a block stays below this many cells.
BLOCK_TOPIC_CELLS = 1 << 23

DENSE_FEATURES = ("hour_of_day", "day_of_week", "log_duration", "item_popularity")


@dataclass(frozen=True)
class Profile:
    """Defaults for one scale of data."""

    mean_events: int
    max_events: int
    n_topics: int
    n_authors: int
    n_items: int
    examples_per_user: int


PROFILES: dict[str, Profile] = {
    # Quick to generate and to test on, still "long" next to KuaiRand's ~10 events per user.
    "small": Profile(mean_events=1_000, max_events=5_000, n_topics=200, n_authors=5_000,
                     n_items=100_000, examples_per_user=32),
    # The paper's scale: 40k events on average, 70k at most; tables of the anchors' sizes.
    "paper": Profile(mean_events=40_000, max_events=70_000, n_topics=10_000, n_authors=500_000,
                     n_items=2_000_000, examples_per_user=64),
}


@dataclass(frozen=True)
class AffinityModel:
    """How users choose what to watch and how they react; one model for events and labels.

    Affinity ``a = base + stable + favourite + burst + quality``. Stable interests are a
    minority of exposure but the largest affinity term, bursts the reverse.
    """

    base: float = -1.0
    stable: float = 2.0  # added for the user's top stable topic, pro rata for the others
    favourite_author: float = 1.0
    burst: float = 0.6
    stable_topics: int = 6
    favourite_authors: int = 8  # a power of two (chosen by the low bits of one draw)
    stable_topic_flatness: float = 0.5  # stable topics ~ topic popularity ** flatness
    stable_share: tuple[float, float] = (0.05, 0.15)  # of exposure, per user
    favourite_share: float = 0.3  # of the stable exposure, items of favourite authors
    burst_share: tuple[float, float] = (0.35, 0.75)  # of the non-stable exposure, per window
    burst_days: tuple[float, float] = (2.0, 7.0)
    # Stable interests show up in turns: in each window this share of the stable exposure
    # goes to one stable topic (drawn by weight), so a few days of history show one of them
    # while the year shows all. Impressions to label draw from the whole stable mixture.
    stable_rotation: float = 0.85
    # Explicit events: P(explicit | a, d) = sigmoid(explicit_bias + explicit_slope * a
    # - action_duration * ln(d / 60)), with the bias solved so that the expected share is
    # the profile's explicit share (d: video duration; the term is 0 for stills).
    explicit_slope: float = 1.5
    # Actions per impression fall with the video's length (the same term in the labels).
    action_duration: float = 0.2
    # Dwell on videos, three ways: a quick skip with P = sigmoid(skip_bias - skip_slope * a);
    # else watched to the end (plus up to replay_max of a replay) with P = sigmoid(
    # complete_bias + complete_slope * a - complete_duration * ln(duration / 60)); else a
    # partial watch, ratio = o / (1 + o) with log-normal odds o around
    # ratio_odds * exp(ratio_slope * a) * (duration / 60) ** -ratio_duration.
    skip_bias: float = -0.85
    skip_slope: float = 0.8
    skip_max_s: float = 2.5
    complete_bias: float = -1.2
    complete_slope: float = 0.9
    complete_duration: float = 0.5
    replay_max: float = 0.3
    ratio_odds: float = 0.35
    ratio_slope: float = 0.45
    ratio_duration: float = 0.3
    ratio_sigma: float = 1.2
    # Dwell on photos and carousels: log-normal seconds.
    photo_median_s: float = 2.5
    carousel_median_s: float = 5.0
    still_slope: float = 0.4
    still_sigma: float = 0.8
    # Actions per impression: P(k | a) = sigmoid(bias_k + slope_k * a); calibrated against
    # KuaiRand-Pure's rates per impression (see docs/data.md).
    action_bias: dict[str, float] = field(default_factory=lambda: {
        "like": -4.6, "share": -7.4, "comment": -6.38, "save": -6.8, "follow": -7.1,
        "profile_visit": -3.94, "hide": -6.6, "report": -9.0})
    action_slope: dict[str, float] = field(default_factory=lambda: {
        "like": 1.5, "share": 1.3, "comment": 1.3, "save": 1.4, "follow": 1.4,
        "profile_visit": 0.9, "hide": -1.2, "report": -1.0})
    # The explicit timeline logs actions with these weights relative to their rates per
    # impression (profile visits and hides are rarely kept as explicit engagement).
    explicit_action_weight: dict[str, float] = field(default_factory=lambda: {
        "like": 1.0, "share": 1.0, "comment": 1.0, "save": 1.0, "follow": 1.0,
        "profile_visit": 0.2, "hide": 0.2, "report": 0.2})
    complete_still_s: float = 6.0  # a photo or carousel counts as complete after this
    skip_label_s: float = 3.0  # an impression shorter than this is a skip
    # Sessions: gaps within a session are exponential with this mean; a new session starts
    # with this probability; the time between sessions fills the rest of the year.
    within_session_gap_s: float = 25.0
    session_break: float = 1 / 25
    length_sigma: float = 0.6  # of the log-normal history length


@dataclass(frozen=True)
class SynthConfig:
    """Arguments of one generator run (``None`` means: the profile's default)."""

    users: int
    seed: int = 0
    profile: str = "small"
    mean_events: int | None = None
    max_events: int | None = None
    days: int = 28
    examples_per_user: int | None = None
    explicit_share: float = 0.25
    model: AffinityModel = field(default_factory=AffinityModel)

    def resolved(self) -> "SynthConfig":
        """Fill profile defaults and check every argument (UsageError naming the option)."""
        if self.profile not in PROFILES:
            raise UsageError(f"unknown profile {self.profile!r}", where="--profile",
                             hint=f"choose one of {', '.join(PROFILES)}")
        p = PROFILES[self.profile]
        c = replace(
            self,
            mean_events=p.mean_events if self.mean_events is None else self.mean_events,
            examples_per_user=(p.examples_per_user if self.examples_per_user is None
                               else self.examples_per_user),
        )
        if c.max_events is None:
            c = replace(c, max_events=max(p.max_events, c.mean_events))
        _check(c.users >= 1, "--users", f"must be at least 1, got {c.users}")
        _check(0 <= c.seed < 2**63, "--seed", f"must be in [0, 2**63), got {c.seed}")
        _check(c.mean_events >= 1, "--mean-events", f"must be at least 1, got {c.mean_events}")
        _check(c.max_events >= c.mean_events, "--max-events",
               f"must be at least --mean-events ({c.mean_events}), got {c.max_events}")
        _check(c.max_events <= 10_000_000, "--max-events",
               f"must be at most 10,000,000, got {c.max_events}")
        _check(1 <= c.days <= 90, "--days", f"must be in 1..90, got {c.days}")
        _check(0 <= c.examples_per_user <= 100_000, "--examples-per-user",
               f"must be in 0..100000, got {c.examples_per_user}")
        _check(0.0 < c.explicit_share < 1.0, "explicit_share",
               f"must be in (0, 1), got {c.explicit_share}")
        return c

    @property
    def catalogue_sizes(self) -> tuple[int, int, int]:
        p = PROFILES[self.profile]
        return p.n_topics, p.n_authors, p.n_items

    @property
    def users_per_block(self) -> int:
        by_events = BLOCK_EVENTS // max(1, self.mean_events)
        by_cells = BLOCK_TOPIC_CELLS // self.catalogue_sizes[0]
        return int(max(1, min(by_events, by_cells, self.users)))


def _check(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise UsageError(message, where=where)


# ----------------------------------------------------------------------------- history lengths

def _mean_capped_lognormal(mu: float, sigma: float, cap: float) -> float:
    """E[min(X, cap)] for X ~ LogNormal(mu, sigma)."""
    phi = lambda x: 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))  # noqa: E731
    lc = math.log(cap)
    return (math.exp(mu + sigma * sigma / 2) * phi((lc - mu - sigma * sigma) / sigma)
            + cap * (1.0 - phi((lc - mu) / sigma)))


def length_mu(mean: float, cap: float, sigma: float) -> float:
    """The log-normal location whose capped mean is ``mean`` (bisection)."""
    lo, hi = math.log(mean) - 5 * sigma - 5, math.log(cap) + 10 * sigma + 5
    for _ in range(200):
        mid = (lo + hi) / 2
        if _mean_capped_lognormal(mid, sigma, cap) < mean:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


# ----------------------------------------------------------------------------- the world

# Independent random streams of one seed: the catalogue, the pilot that calibrates the
# explicit share, one per block of users, and the days an extension adds
# (dv365/data/synth_extend.py).
STREAM_CATALOGUE, STREAM_PILOT, STREAM_BLOCK, STREAM_EXTEND = 0, 1, 2, 3


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _key(rng: np.random.Generator) -> int:
    """A 64-bit key for the kernels' counter-based draws."""
    return int(rng.integers(0, 2**64, dtype=np.uint64))


@dataclass
class World:
    """Everything shared by all blocks of one run: catalogue, lookup tables, vocab codes."""

    config: SynthConfig
    catalogue: Catalogue
    vocab: dict[str, list[str]]
    kernel_catalogue: CatalogueArrays
    tables: Tables
    constants: Constants
    stable_topic_cdf: np.ndarray
    length_mu: float
    events_meta: DatasetMeta | None = None
    examples_meta: DatasetMeta | None = None
    events_schema: pa.Schema | None = None
    examples_schema: pa.Schema | None = None
    tasks: list[str] = field(default_factory=list)
    dictionaries: dict[str, pa.Array] = field(default_factory=dict)

    @classmethod
    def build(cls, config: SynthConfig) -> "World":
        m = config.model
        cat = build_catalogue(_stream(config.seed, STREAM_CATALOGUE), *config.catalogue_sizes)
        vocab = {k: list(v) for k, v in DEFAULT_VOCAB.items()}
        mt = vocab["media_type"]
        assert mt[VIDEO] == "video" and mt[PHOTO] == "photo" and mt[CAROUSEL] == "carousel"
        s = {name: vocab["surface"].index(name) for name in ("reels", "feed", "stories",
                                                             "explore")}
        # Surface given media type; the overall mix follows KuaiRand's tabs (one dominant
        # feed of short videos, a few minor ones), see docs/data.md.
        surface_given = {
            VIDEO: {s["reels"]: 0.90, s["feed"]: 0.05, s["explore"]: 0.03, s["stories"]: 0.02},
            PHOTO: {s["feed"]: 0.60, s["stories"]: 0.25, s["explore"]: 0.15},
            CAROUSEL: {s["feed"]: 0.70, s["explore"]: 0.20, s["stories"]: 0.10},
        }
        choices = 1 << CHOICE_BITS
        surface_lut = np.zeros(3 * choices, dtype=np.int8)
        for media, dist in surface_given.items():
            codes = np.array(list(dist), dtype=np.int8)
            surface_lut[media * choices:(media + 1) * choices] = codes[
                inverse_cdf_lut(np.array(list(dist.values())), choices)]

        coarse = affinity_centres(fine=False)
        weights = np.stack([m.explicit_action_weight[k]
                            * _sigmoid(m.action_bias[k] + m.action_slope[k] * coarse)
                            for k in vocab["action"]], axis=1)
        action_lut = np.concatenate([inverse_cdf_lut(w, choices) for w in weights])

        dur = np.nan_to_num(cat.item_duration, nan=60.0)
        items = np.zeros(cat.n_items, dtype=ITEM_DTYPE)
        items["topic"], items["author"] = cat.item_topic, cat.item_author
        items["duration"], items["quality"] = cat.item_duration, cat.item_quality
        items["ratio"] = m.ratio_odds * (dur / 60.0) ** -m.ratio_duration
        items["media_type"] = cat.item_media_type
        items["duration_bucket"] = duration_bucket(cat.item_duration)
        kcat = CatalogueArrays(
            items=items,
            topic_item_start=cat.topic_item_start, topic_item_count=cat.topic_item_count,
            author_item_start=cat.author_item_start, author_item_count=cat.author_item_count,
            topic_lut=cat.topic_lut, n_topics=cat.n_topics,
        )
        a, z = affinity_centres(), normal_lut()
        tables = Tables(
            exponential=exponential_lut(),
            ratio_noise=np.exp(m.ratio_sigma * z).astype(np.float32),
            still_noise=np.exp(m.still_sigma * z).astype(np.float32),
            ratio_affinity=np.exp(m.ratio_slope * a).astype(np.float32),
            still_affinity=np.exp(m.still_slope * a).astype(np.float32),
            skip_thr=np.round(_sigmoid(m.skip_bias - m.skip_slope * a) * LUT_SIZE
                              ).astype(np.int32),
            complete_thr=np.round(_sigmoid(
                m.complete_bias + m.complete_slope * a[:, None]
                - m.complete_duration * np.log(duration_centres()[None, :] / 60.0)) * LUT_SIZE
            ).astype(np.int32).ravel(),
            explicit_thr=np.zeros(len(a) * len(duration_centres()), np.int32),
            surface_lut=surface_lut, action_lut=action_lut.astype(np.int8),
        )
        constants = Constants(
            base=m.base, favourite_author=m.favourite_author, burst=m.burst,
            rotation_128=int(round(m.stable_rotation * 128)),
            skip_max_s=m.skip_max_s, replay_max=m.replay_max,
            photo_median_s=m.photo_median_s, carousel_median_s=m.carousel_median_s,
            within_gap_ms=m.within_session_gap_s * 1000.0,
            break_thr=int(round(m.session_break * LUT_SIZE)),
        )
        p = cat.topic_popularity ** m.stable_topic_flatness
        world = cls(config=config, catalogue=cat, vocab=vocab, kernel_catalogue=kcat,
                    tables=tables, constants=constants,
                    stable_topic_cdf=np.cumsum(p / p.sum()),
                    length_mu=length_mu(config.mean_events, config.max_events,
                                        m.length_sigma))
        world.tables = tables._replace(
            explicit_thr=world._explicit_thresholds(_stream(config.seed, STREAM_PILOT)))
        return world

    def _explicit_thresholds(self, rng: np.random.Generator) -> np.ndarray:
        """Solve the explicit bias on a pilot sample so the explicit share hits the target."""
        m = self.config.model
        users = _draw_users(self, rng, np.arange(64, dtype=np.int64))
        per_user = 1 << 11
        offsets = np.arange(users.n + 1, dtype=np.int64) * per_user
        ts = np.sort(rng.integers(PERIOD_START_MS + 3 * DAY_MS, PERIOD_END_MS - DAY_MS,
                                  (users.n, per_user)), axis=1).ravel()
        imp = run_impressions(_key(rng), offsets, ts, True, self.kernel_catalogue, users.arrays,
                              self.tables, self.constants)
        logit = m.explicit_slope * imp.affinity.astype(np.float64) + _duration_term(
            m, imp.video_duration)
        target = self.config.explicit_share
        lo, hi = -30.0, 30.0
        for _ in range(60):
            mid = (lo + hi) / 2
            share = _sigmoid(mid + logit).mean()
            lo, hi = (mid, hi) if share < target else (lo, mid)
        p = _sigmoid((lo + hi) / 2 + m.explicit_slope * affinity_centres()[:, None]
                     + _duration_term(m, duration_centres())[None, :])
        return np.round(p * LUT_SIZE).astype(np.int32).ravel()


def _duration_term(m: AffinityModel, seconds: np.ndarray) -> np.ndarray:
    """The action logits' duration term: shorter videos get more actions; 0 for stills."""
    return np.nan_to_num(-m.action_duration * np.log(np.asarray(seconds, np.float64) / 60.0))


# ----------------------------------------------------------------------------- users

@dataclass
class Users:
    """Per-user planted state of one block (arrays indexed by the user's position)."""

    arrays: UserArrays
    n_events: np.ndarray  # int64 [n]
    stable_share: np.ndarray  # float32 [n]

    @property
    def n(self) -> int:
        return len(self.arrays.user_id)


def _draw_users(world: World, rng: np.random.Generator, user_ids: np.ndarray) -> Users:
    cfg, m, cat = world.config, world.config.model, world.catalogue
    n, k, f, t = len(user_ids), m.stable_topics, m.favourite_authors, cat.n_topics

    lengths = np.exp(world.length_mu + m.length_sigma * rng.standard_normal(n))
    lengths = np.clip(np.round(lengths), 1, cfg.max_events).astype(np.int64)

    topics = np.searchsorted(world.stable_topic_cdf, rng.random((n, k)), side="right")
    topics = np.minimum(topics, t - 1).astype(np.int32)
    w = rng.exponential(size=(n, k))
    w = -np.sort(-w / w.sum(axis=1, keepdims=True), axis=1)  # Dirichlet(1), largest first
    contrib = (m.stable * w / w[:, :1]).astype(np.float32)
    aff = np.zeros((n, t), dtype=np.float32)
    np.add.at(aff, (np.repeat(np.arange(n), k), topics.ravel()), contrib.ravel())
    grid = (np.arange(64) + 0.5) / 64
    slot = (grid[None, :, None] > np.cumsum(w, axis=1)[:, None, :]).sum(axis=2)
    stable_pick = np.take_along_axis(topics, np.minimum(slot, k - 1), axis=1)

    fav_topic = np.take_along_axis(stable_pick, rng.integers(0, 64, (n, f)), axis=1)
    u = rng.random((n, f)) ** ITEM_SKEW
    favourites = (cat.author_start[fav_topic]
                  + (u * cat.author_count[fav_topic]).astype(np.int64)).astype(np.int32)

    share = rng.uniform(*m.stable_share, n).astype(np.float32)
    burst_len = (rng.uniform(*m.burst_days, n) * DAY_MS).astype(np.int64)
    phase = (rng.random(n) * burst_len).astype(np.int64)
    windows = int(math.ceil((PERIOD_DAYS + 1) / m.burst_days[0])) + 2
    burst_topic = cat.topic_lut[rng.integers(0, LUT_SIZE, (n, windows))].astype(np.int32)
    intensity = rng.uniform(*m.burst_share, (n, windows)).astype(np.float32)
    window_stable = np.take_along_axis(stable_pick, rng.integers(0, 64, (n, windows)), axis=1)

    start = PERIOD_START_MS + (rng.random(n) * 3 * DAY_MS).astype(np.int64)
    end = PERIOD_END_MS - (rng.random(n) * DAY_MS / 4).astype(np.int64)
    arrays = UserArrays(
        user_id=np.ascontiguousarray(user_ids, dtype=np.int64), start_ms=start,
        span_ms=end - start,
        stable_thr=np.round(share * LUT_SIZE).astype(np.int32),
        favourite_thr=np.round(share * m.favourite_share * LUT_SIZE).astype(np.int32),
        stable_pick=np.ascontiguousarray(stable_pick, dtype=np.int32).ravel(),
        window_stable=np.ascontiguousarray(window_stable, dtype=np.int32).ravel(),
        stable_affinity=aff.ravel(),
        favourites=favourites,
        burst_len_ms=burst_len, burst_phase_ms=phase,
        burst_topic=burst_topic.ravel(), burst_share=intensity.ravel(),
        windows=windows,
    )
    return Users(arrays=arrays, n_events=lengths, stable_share=share)


# ----------------------------------------------------------------------------- blocks

@dataclass
class Block:
    """One block's output tables."""

    events: pa.Table
    examples: pa.Table
    users: pa.Table
    bursts: pa.Table
    n_events: int
    n_explicit: int


def _column(values: np.ndarray, type_: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """An Arrow array over ``values``' memory (no copy); ``valid`` marks non-null rows.

    Built from buffers because ``pa.array(values, mask=...)`` costs ~7 ns per row and
    column here, as much as generating the row.
    """
    values = np.ascontiguousarray(values)
    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(type_, len(values), [bitmap, pa.py_buffer(values)])


def _dictionary(codes: np.ndarray, values: pa.Array,
                valid: np.ndarray | None = None) -> pa.DictionaryArray:
    # Codes come from the generator's own tables, so the bounds check is skipped.
    return pa.DictionaryArray.from_arrays(
        _column(codes.astype(np.int32, copy=False), pa.int32(), valid), values, safe=False)


class BlockBuffers:
    """Event columns reused from block to block.

    Fresh memory for every block costs page faults and zeroing, about 10 ns per event; a
    block's Arrow tables point into these arrays, so a set goes back to the pool only after
    the writer has written its block.
    """

    def __init__(self) -> None:
        self.capacity = 0
        self.ts = np.empty(0, np.int64)
        self.columns = allocate_impressions(0)

    def reserve(self, n: int) -> None:
        if n > self.capacity:
            self.capacity = int(n * 1.25)
            self.ts = np.empty(self.capacity, np.int64)
            self.columns = allocate_impressions(self.capacity)


def generate_block(world: World, block: int, first_user: int, n_users: int,
                   buffers: BlockBuffers | None = None) -> Block:
    """Generate users ``first_user .. first_user + n_users - 1`` (block number ``block``).

    With ``buffers`` the event columns live in (and stay valid only as long as) them.
    """
    cfg = world.config
    rng = block_users_stream(cfg.seed, block)
    users = _draw_users(world, rng, np.arange(first_user, first_user + n_users, dtype=np.int64))
    events, explicit = user_events(world, users.arrays, users.n_events, _key(rng), buffers)
    # Every user has at least one event, so reduceat's segments are never empty.
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(users.n_events, out=offsets[1:])
    n_explicit = np.add.reduceat(explicit.view(np.int8), offsets[:-1], dtype=np.int64)
    return Block(events=events, examples=_examples(world, rng, users),
                 users=_users_truth(world, users, n_explicit.astype(np.int64)),
                 bursts=_bursts_truth(users), n_events=int(users.n_events.sum()),
                 n_explicit=int(explicit.sum()))


def block_users_stream(seed: int, block: int) -> np.random.Generator:
    """The random stream of block ``block``: its users' planted state is drawn first."""
    return _stream(seed, STREAM_BLOCK, block)


def user_events(world: World, users: UserArrays, counts: np.ndarray, key: int,
                buffers: BlockBuffers | None = None) -> tuple[pa.Table, np.ndarray]:
    """``counts[u]`` events of each user over ``[start_ms, start_ms + span_ms]`` as an events
    table, and which of them are explicit (every count at least 1)."""
    n = int(counts.sum())
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if buffers is not None:
        buffers.reserve(n)
    ts = np.empty(n, dtype=np.int64) if buffers is None else buffers.ts[:n]
    event_times(np.uint64(key), offsets, users, world.tables, world.constants, ts)
    ev = run_impressions(key, offsets, ts, True, world.kernel_catalogue, users,
                         world.tables, world.constants,
                         out=None if buffers is None else buffers.columns)

    explicit = ev.timeline == EXPLICIT
    d = world.dictionaries
    events = pa.Table.from_arrays([
        _column(ev.user_id, pa.int64()),
        _column(ts, TS_TYPE),
        _dictionary(ev.timeline, d["timeline"]),
        _column(ev.media_id, pa.int64()),
        _column(ev.author_id, pa.int64()),
        _column(ev.topic_id, pa.int64()),
        _dictionary(ev.media_type, d["media_type"]),
        _dictionary(ev.surface, d["surface"]),
        _dictionary(ev.action, d["action"], valid=explicit),
        _column(ev.video_duration, pa.float32(), valid=ev.media_type == VIDEO),
        _column(ev.dwell_time, pa.float32(), valid=~explicit),
    ], schema=world.events_schema)
    return events, explicit


def _examples(world: World, rng: np.random.Generator, users: Users, *,
              end_ms: int = PERIOD_END_MS, days: int | None = None,
              per_user: int | None = None) -> pa.Table:
    """Labelled impressions of ``users`` over the ``days`` days before ``end_ms`` (default:
    the run's final ``--days`` days, ``--examples-per-user`` each)."""
    cfg, m, cat = world.config, world.config.model, world.catalogue
    per_user = cfg.examples_per_user if per_user is None else per_user
    n = users.n * per_user
    window = (cfg.days if days is None else days) * DAY_MS
    offset = np.sort((rng.random((users.n, per_user)) * window).astype(np.int64), axis=1)
    request = (end_ms - window + offset).ravel()
    offsets = np.arange(users.n + 1, dtype=np.int64) * per_user
    imp = run_impressions(_key(rng), offsets, request, False, world.kernel_catalogue, users.arrays,
                          world.tables, world.constants)
    aff = imp.affinity.astype(np.float64)
    dwell, dur = imp.dwell_time, imp.video_duration
    video = imp.media_type == VIDEO

    labels: dict[str, np.ndarray] = {}
    draws = rng.random((len(m.action_bias), n))
    length = _duration_term(m, dur)
    for i, task in enumerate(m.action_bias):
        p = _sigmoid(m.action_bias[task] + m.action_slope[task] * aff + length)
        labels[task] = (draws[i] < p).astype(np.int8)
    labels["complete"] = np.where(video, dwell >= dur, dwell >= m.complete_still_s).astype(np.int8)
    labels["skip"] = (dwell < m.skip_label_s).astype(np.int8)
    labels["watch_time"] = dwell

    dense = {
        "hour_of_day": ((request // 3_600_000) % 24) / 24.0,
        "day_of_week": ((request // DAY_MS + 3) % 7) / 7.0,  # Monday = 0
        "log_duration": np.where(video, np.log1p(np.nan_to_num(dur)), 0.0),
        "item_popularity": np.log10(np.take(cat.item_popularity, imp.media_id) * cat.n_items),
    }
    cols = [
        pa.array(imp.user_id),
        pa.array(request, TS_TYPE),
        pa.array(imp.media_id),
        pa.array(imp.author_id),
        pa.array(imp.topic_id),
        _dictionary(imp.media_type, world.dictionaries["media_type"]),
        _dictionary(imp.surface, world.dictionaries["surface"]),
    ]
    cols += [pa.array(dense[d].astype(np.float32)) for d in DENSE_FEATURES]
    cols += [pa.array(labels[t]) for t in world.tasks]
    return pa.Table.from_arrays(cols, schema=world.examples_schema)


USERS_TRUTH_SCHEMA = pa.schema([
    ("user_id", pa.int64()),
    ("n_events", pa.int64()),
    ("n_explicit", pa.int64()),
    ("stable_share", pa.float32()),
    ("stable_topics", pa.list_(pa.int64())),
    ("stable_affinity", pa.list_(pa.float32())),
    ("favourite_authors", pa.list_(pa.int64())),
    ("burst_window_days", pa.float32()),
])

BURSTS_TRUTH_SCHEMA = pa.schema([
    ("user_id", pa.int64()),
    ("start", TS_TYPE),
    ("end", TS_TYPE),
    ("topic_id", pa.int64()),
    ("share", pa.float32()),
])


def _users_truth(world: World, users: Users, n_explicit: np.ndarray) -> pa.Table:
    ua, t = users.arrays, world.catalogue.n_topics
    aff = ua.stable_affinity.reshape(users.n, t)
    rows, topics = np.nonzero(aff)
    order = np.lexsort((-aff[rows, topics], rows))  # strongest first within each user
    rows, topics = rows[order], topics[order]
    off = np.zeros(users.n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=users.n), out=off[1:])
    f = ua.favourites.shape[1]
    fav = np.sort(ua.favourites, axis=1)
    return pa.Table.from_arrays([
        pa.array(ua.user_id),
        pa.array(users.n_events),
        pa.array(n_explicit),
        pa.array(users.stable_share),
        pa.ListArray.from_arrays(pa.array(off), pa.array(topics.astype(np.int64))),
        pa.ListArray.from_arrays(pa.array(off), pa.array(aff[rows, topics])),
        pa.ListArray.from_arrays(pa.array(np.arange(users.n + 1, dtype=np.int32) * f),
                                 pa.array(fav.ravel().astype(np.int64))),
        pa.array((ua.burst_len_ms / DAY_MS).astype(np.float32)),
    ], schema=USERS_TRUTH_SCHEMA)


def _bursts_truth(users: Users) -> pa.Table:
    ua = users.arrays
    w = np.arange(ua.windows, dtype=np.int64)
    start = (ua.start_ms - ua.burst_phase_ms)[:, None] + w[None, :] * ua.burst_len_ms[:, None]
    end = start + ua.burst_len_ms[:, None]
    keep = (end > ua.start_ms[:, None]) & (start < PERIOD_END_MS)
    rows = np.nonzero(keep)[0]
    return pa.Table.from_arrays([
        pa.array(ua.user_id[rows]),
        pa.array(np.maximum(start[keep], ua.start_ms[rows]), TS_TYPE),
        pa.array(np.minimum(end[keep], PERIOD_END_MS), TS_TYPE),
        pa.array(ua.burst_topic.reshape(users.n, -1)[keep].astype(np.int64)),
        pa.array(ua.burst_share.reshape(users.n, -1)[keep]),
    ], schema=BURSTS_TRUTH_SCHEMA)


# ----------------------------------------------------------------------------- writing

# Parquet settings for events, chosen by benchmarks/synth.py (see docs/benchmarks.md):
# dictionary encoding for the user id and the enumerations (few distinct values, long runs),
# delta encoding for times (sorted per user) and for the item ids (small, skewed), plain
# floats, and no codec on top: about 17 bytes per event, as small as zstd's output at the
# cost of uncompressed writing. Statistics only on the sort keys (min/max of dictionary
# columns is costly and useless).
EVENTS_COMPRESSION = "none"
EVENTS_PARQUET_OPTIONS = dict(
    use_dictionary=["user_id", "timeline", "media_type", "surface", "action"],
    write_statistics=["user_id", "ts"],
    column_encoding={c: "DELTA_BINARY_PACKED" for c in ("ts", "media_id", "author_id",
                                                          "topic_id")},
)


# Examples and truth are small next to the events but wide; default Parquet settings (zstd,
# dictionaries and statistics everywhere) cost as much CPU per event as generating it.
EXAMPLES_PARQUET_OPTIONS = dict(
    use_dictionary=["user_id", "media_type", "surface"],
    write_statistics=["user_id", "request_ts"],
    column_encoding={"request_ts": "DELTA_BINARY_PACKED"},
)
TRUTH_PARQUET_OPTIONS = dict(compression="lz4", use_dictionary=["user_id"],
                             write_statistics=["user_id"], **CHECKSUMS)


def _meta(world: World, kind: str) -> DatasetMeta:
    return DatasetMeta(
        kind=kind, vocab=world.vocab,
        tasks=({t: "binary" for t in DEFAULT_BINARY_TASKS}
               | {t: "regression" for t in DEFAULT_REGRESSION_TASKS}) if kind == "examples"
        else {},
        dense=list(DENSE_FEATURES) if kind == "examples" else [],
        source=f"dv365 synth (profile {world.config.profile}, seed {world.config.seed})",
    )


def _prepare(world: World) -> World:
    world.events_meta = _meta(world, "events")
    world.examples_meta = _meta(world, "examples")
    world.events_schema = events_schema(world.events_meta)
    world.examples_schema = examples_schema(world.examples_meta)
    world.tasks = list(world.examples_meta.tasks)
    world.dictionaries = {"timeline": pa.array(TIMELINES)} | {
        k: pa.array(v, pa.string()) for k, v in world.vocab.items()}
    missing = set(world.tasks) - set(world.config.model.action_bias) - {
        "complete", "skip", "watch_time"}
    assert not missing, f"no label model for tasks {missing}"
    return world


def iter_blocks(world: World,
                buffers: Callable[[], BlockBuffers | None] = lambda: None) -> Iterator[Block]:
    """The run's blocks in order (each about BLOCK_EVENTS events); ``buffers()`` gives the
    columns for the next block (default: fresh memory)."""
    cfg = world.config
    per = cfg.users_per_block
    for block, first in enumerate(range(0, cfg.users, per)):
        yield generate_block(world, block, first, min(per, cfg.users - first), buffers())


class _WriterThread:
    """Writes tables on a second thread so Parquet encoding overlaps generation."""

    QUEUE = 2  # blocks waiting to be written

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=self.QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dv365-synth-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._error is None:
                try:
                    job()
                except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
                    self._error = exc

    def submit(self, job: Callable[[], None]) -> None:
        self.check()
        self._queue.put(job)

    def check(self) -> None:
        """Raise the writer's error, if it failed."""
        self._raise()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


@dataclass
class SynthSummary:
    """What a run wrote."""

    users: int
    events: int
    explicit: int
    examples: int
    path: Path


def synthesize(out: str | Path, config: SynthConfig, *, overwrite: bool = False,
               progress: Callable[[int], None] | None = None,
               compression: str = EVENTS_COMPRESSION,
               parquet_options: dict | None = None,
               rows_per_file: int = DEFAULT_ROWS_PER_FILE) -> SynthSummary:
    """Generate the data set into ``out`` (atomically; refuses to overwrite unless asked).

    ``compression``, ``parquet_options`` and ``rows_per_file`` change how the events are
    stored, never which events are written.
    """
    config = config.resolved()
    out = Path(out)
    if out.exists() and not overwrite:
        raise UsageError(f"{out} already exists", where=str(out), hint="pass --force to replace it")
    world = _prepare(World.build(config))
    options = EVENTS_PARQUET_OPTIONS if parquet_options is None else parquet_options
    totals = {"events": 0, "explicit": 0, "examples": 0}
    with staged_directory(out, if_exists="replace" if overwrite else "refuse") as stage:
        truth = stage / "truth"
        truth.mkdir()
        _write_items(world, truth / "items.parquet")
        (truth / "params.json").write_text(json.dumps(params(world), indent=2, sort_keys=True))
        events = DatasetWriter(stage / "events", world.events_schema, compression=compression,
                               parquet_options=options, rows_per_file=rows_per_file)
        examples = DatasetWriter(stage / "examples", world.examples_schema,
                                 compression="lz4", parquet_options=EXAMPLES_PARQUET_OPTIONS)
        users_w = pq.ParquetWriter(truth / "users.parquet", USERS_TRUTH_SCHEMA,
                                   **TRUTH_PARQUET_OPTIONS)
        bursts_w = pq.ParquetWriter(truth / "bursts.parquet", BURSTS_TRUTH_SCHEMA,
                                    **TRUTH_PARQUET_OPTIONS)
        writer = _WriterThread()
        # Buffer sets for the blocks in flight: queued, being written, being generated.
        free: queue.Queue = queue.Queue()
        for _ in range(_WriterThread.QUEUE + 2):
            free.put(BlockBuffers())
        taken: list[BlockBuffers] = []

        def next_buffers() -> BlockBuffers:
            while True:  # a failed writer returns no buffers: surface its error instead
                try:
                    taken.append(free.get(timeout=0.2))
                    return taken[-1]
                except queue.Empty:
                    writer.check()

        try:
            for block in iter_blocks(world, next_buffers):
                def job(b: Block = block, buf: BlockBuffers = taken.pop()) -> None:
                    events.write(b.events)
                    free.put(buf)
                writer.submit(job)
                # The small outputs are written here: encoding the events is the slower half
                # of the pipeline, so the writer thread gets nothing else.
                examples.write(block.examples)
                users_w.write_table(block.users)
                bursts_w.write_table(block.bursts)
                totals["events"] += block.n_events
                totals["explicit"] += block.n_explicit
                totals["examples"] += block.examples.num_rows
                if progress is not None:
                    progress(block.users.num_rows)
        finally:
            writer.close()
            events.close()
            examples.close()
            users_w.close()
            bursts_w.close()
    return SynthSummary(users=config.users, events=totals["events"],
                        explicit=totals["explicit"], examples=totals["examples"], path=out)


def params(world: World) -> dict:
    """The generator's parameters as written to ``truth/params.json``."""
    cfg = world.config
    t, a, i = cfg.catalogue_sizes
    d = asdict(cfg)
    d.pop("model")
    return {
        "generator": "dv365 synth",
        "config": d,
        "model": asdict(cfg.model),
        "catalogue": {"topics": t, "authors": a, "items": i},
        "period": {"start_ms": PERIOD_START_MS, "end_ms": PERIOD_END_MS,
                   "examples_start_ms": PERIOD_END_MS - cfg.days * DAY_MS},
        "length_mu": world.length_mu,
        "users_per_block": cfg.users_per_block,
        "block_events": BLOCK_EVENTS,
        "vocab": world.vocab,
        "dense": list(DENSE_FEATURES),
    }


def _write_items(world: World, path: Path) -> None:
    cat = world.catalogue
    media = cat.item_media_type
    table = pa.table({
        "media_id": np.arange(cat.n_items, dtype=np.int64),
        "author_id": cat.item_author.astype(np.int64),
        "topic_id": cat.item_topic.astype(np.int64),
        "media_type": _dictionary(media, pa.array(world.vocab["media_type"])),
        "video_duration": pa.array(cat.item_duration, mask=media != VIDEO),
        "quality": cat.item_quality,
        "popularity": cat.item_popularity,
    })
    pq.write_table(table, path, **TRUTH_PARQUET_OPTIONS)
