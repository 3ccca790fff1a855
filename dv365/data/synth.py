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

Speed: every step is vectorised over a *block* of users (about a million events); random
variates are 16-bit raw bits read through quantile tables; a writer thread encodes Parquet
while the next block is generated. Determinism: the catalogue and each block draw from their
own stream of ``SeedSequence(seed)``; the block size depends only on the arguments, so the
same arguments give byte-identical output.
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

from dv365.data.dataset import DatasetWriter, staged_output
from dv365.data.schema import (
    DEFAULT_BINARY_TASKS,
    DEFAULT_REGRESSION_TASKS,
    DEFAULT_VOCAB,
    EXPLICIT,
    IMPLICIT,
    TIMELINES,
    TS_TYPE,
    DatasetMeta,
    events_schema,
    examples_schema,
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
from dv365.errors import UsageError

DAY_MS = 86_400_000
# The period is fixed so that data from the same arguments is the same on every machine.
PERIOD_END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PERIOD_DAYS = 365
PERIOD_START_MS = PERIOD_END_MS - PERIOD_DAYS * DAY_MS  # 2025-01-01T00:00:00Z

# Events generated per block of users, the unit of randomness and of writing.
BLOCK_EVENTS = 1 << 20
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
    # Explicit events: P(explicit | a) = sigmoid(explicit_bias + explicit_slope * a), with
    # the bias solved so that the expected share is the profile's explicit share.
    explicit_slope: float = 1.5
    # Dwell on videos: a quick skip with P = sigmoid(skip_bias - skip_slope * a), else a watch
    # ratio log-normal around ratio_median * exp(ratio_slope * a) * (duration/60)**-ratio_dur.
    skip_bias: float = -0.2
    skip_slope: float = 0.8
    skip_max_s: float = 2.5
    ratio_median: float = 0.35
    ratio_slope: float = 0.45
    ratio_duration: float = 0.35
    ratio_sigma: float = 1.0
    ratio_max: float = 4.0
    # Dwell on photos and carousels: log-normal seconds.
    photo_median_s: float = 2.5
    carousel_median_s: float = 5.0
    still_slope: float = 0.4
    still_sigma: float = 0.8
    # Actions per impression: P(k | a) = sigmoid(bias_k + slope_k * a); calibrated against
    # KuaiRand-Pure's rates per impression (see docs/data.md).
    action_bias: dict[str, float] = field(default_factory=lambda: {
        "like": -5.6, "share": -8.0, "comment": -7.2, "save": -6.8, "follow": -7.6,
        "profile_visit": -4.9, "hide": -6.6, "report": -9.0})
    action_slope: dict[str, float] = field(default_factory=lambda: {
        "like": 1.5, "share": 1.3, "comment": 1.3, "save": 1.4, "follow": 1.4,
        "profile_visit": 0.9, "hide": -1.2, "report": -1.0})
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

AFF_LO, AFF_HI, AFF_BUCKETS = -2.5, 4.5, 32

# Independent random streams of one seed: the catalogue, the pilot that calibrates the
# explicit share, and one per block of users.
STREAM_CATALOGUE, STREAM_PILOT, STREAM_BLOCK = 0, 1, 2


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _bucket_centres() -> np.ndarray:
    width = (AFF_HI - AFF_LO) / AFF_BUCKETS
    return AFF_LO + width * (np.arange(AFF_BUCKETS) + 0.5)


@dataclass
class World:
    """Everything shared by all blocks of one run: catalogue, lookup tables, vocab codes."""

    config: SynthConfig
    catalogue: Catalogue
    vocab: dict[str, list[str]]
    surface_lut: np.ndarray  # int32 [3 * LUT_SIZE]: (media type, 16 bits) -> surface code
    action_lut: np.ndarray  # int32 [AFF_BUCKETS * LUT_SIZE]: (bucket, 16 bits) -> action code
    explicit_thr: np.ndarray  # int32 [AFF_BUCKETS]: explicit if 16 bits < threshold
    normal: np.ndarray
    exponential: np.ndarray
    item_log_ratio_bias: np.ndarray  # float32 [I]: duration term of the video watch ratio
    stable_topic_cdf: np.ndarray
    length_mu: float
    events_meta: DatasetMeta | None = None
    examples_meta: DatasetMeta | None = None
    events_schema: pa.Schema | None = None
    examples_schema: pa.Schema | None = None
    tasks: list[str] = field(default_factory=list)

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
        surface_lut = np.zeros(3 * LUT_SIZE, dtype=np.int32)
        for media, dist in surface_given.items():
            codes = np.array(list(dist))
            surface_lut[media * LUT_SIZE:(media + 1) * LUT_SIZE] = codes[
                inverse_cdf_lut(np.array(list(dist.values())))]

        a = _bucket_centres()
        actions = vocab["action"]
        weights = np.stack([_sigmoid(m.action_bias[k] + m.action_slope[k] * a)
                            for k in actions], axis=1)
        action_lut = np.concatenate([inverse_cdf_lut(w) for w in weights]).astype(np.int32)

        mu = length_mu(config.mean_events, config.max_events, m.length_sigma)
        world = cls(config=config, catalogue=cat, vocab=vocab, surface_lut=surface_lut,
                    action_lut=action_lut, explicit_thr=np.zeros(AFF_BUCKETS, np.int32),
                    normal=normal_lut(), exponential=exponential_lut(),
                    item_log_ratio_bias=np.zeros(0, np.float32),
                    stable_topic_cdf=np.zeros(0), length_mu=mu)
        dur = np.nan_to_num(cat.item_duration, nan=60.0)
        world.item_log_ratio_bias = (math.log(m.ratio_median)
                                     - m.ratio_duration * np.log(dur / 60.0)).astype(np.float32)
        p = cat.topic_popularity ** m.stable_topic_flatness
        world.stable_topic_cdf = np.cumsum(p / p.sum())
        world.explicit_thr = world._explicit_thresholds(_stream(config.seed, STREAM_PILOT))
        return world

    def _explicit_thresholds(self, rng: np.random.Generator) -> np.ndarray:
        """Solve the explicit bias on a pilot sample so the explicit share hits the target."""
        m = self.config.model
        users = _draw_users(self, rng, np.arange(256, dtype=np.int64), pilot=True)
        n = 1 << 17
        uid = rng.integers(0, users.n, n).astype(np.int32)
        t_rel = (rng.random(n) * PERIOD_DAYS * DAY_MS).astype(np.int64)
        bits = np.frombuffer(rng.bytes(8 * n), dtype=np.uint16).reshape(4, n)
        item, burst_topic = _draw_exposure(self, users, uid, t_rel, bits, rotate=True)
        aff = _affinity(self, users, uid, item, burst_topic)
        target = self.config.explicit_share
        lo, hi = -20.0, 20.0
        for _ in range(60):
            mid = (lo + hi) / 2
            share = _sigmoid(mid + m.explicit_slope * aff).mean()
            lo, hi = (mid, hi) if share < target else (lo, mid)
        p = _sigmoid((lo + hi) / 2 + m.explicit_slope * _bucket_centres())
        return np.round(p * LUT_SIZE).astype(np.int32)


# ----------------------------------------------------------------------------- users

@dataclass
class Users:
    """Per-user planted state of one block (arrays indexed by the user's position)."""

    user_id: np.ndarray  # int64 [n]
    n_events: np.ndarray  # int64 [n]
    start_ms: np.ndarray  # int64 [n]
    span_ms: np.ndarray  # int64 [n]
    stable_share: np.ndarray  # float32 [n]
    stable_thr: np.ndarray  # int32 [n]: exposure bits below this -> stable
    favourite_thr: np.ndarray  # int32 [n]: ... below this -> a favourite author's item
    stable_pick: np.ndarray  # int32 [n * 64]: 6 bits -> stable topic, weighted
    window_stable: np.ndarray  # int32 [n * W]: the stable topic in turn in each window
    stable_affinity: np.ndarray  # float32 [n * T]: affinity term of each (user, topic)
    favourites: np.ndarray  # int32 [n, F]
    burst_len_ms: np.ndarray  # int64 [n]
    burst_phase_ms: np.ndarray  # int64 [n]
    burst_topic: np.ndarray  # int32 [n * W]
    burst_intensity_thr: np.ndarray  # float32 [n * W]: share of non-stable exposure
    windows: int

    @property
    def n(self) -> int:
        return len(self.user_id)


def _draw_users(world: World, rng: np.random.Generator, user_ids: np.ndarray,
                pilot: bool = False) -> Users:
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
    return Users(
        user_id=user_ids, n_events=lengths, start_ms=start, span_ms=end - start,
        stable_share=share,
        stable_thr=np.round(share * LUT_SIZE).astype(np.int32),
        favourite_thr=np.round(share * m.favourite_share * LUT_SIZE).astype(np.int32),
        stable_pick=stable_pick.astype(np.int32).ravel(),
        window_stable=window_stable.astype(np.int32).ravel(),
        stable_affinity=aff.ravel(),
        favourites=favourites,
        burst_len_ms=burst_len, burst_phase_ms=phase,
        burst_topic=burst_topic.ravel(), burst_intensity_thr=intensity.ravel(),
        windows=windows,
    )


# ----------------------------------------------------------------------------- per-event model

def _burst_window(users: Users, uid: np.ndarray, t_rel: np.ndarray) -> np.ndarray:
    """Flat index of the burst window each (user, time since the user's start) falls in."""
    w = (t_rel + np.take(users.burst_phase_ms, uid)) // np.take(users.burst_len_ms, uid)
    return uid.astype(np.int64) * users.windows + w


def _draw_exposure(world: World, users: Users, uid: np.ndarray, t_rel: np.ndarray,
                   bits: np.ndarray, rotate: bool) -> tuple[np.ndarray, np.ndarray]:
    """Which item each event shows: stable, favourite author, burst or popular.

    ``bits`` holds four rows of 16-bit uniforms: component, pick, item high, item low. With
    ``rotate`` (history events) stable exposure mostly follows the window's stable topic in
    turn; without (impressions to label) it draws from the whole stable mixture.
    Returns the item index and the burst topic active at that time.
    """
    cat = world.catalogue
    comp, pick = bits[0].astype(np.int32), bits[1]
    win = _burst_window(users, uid, t_rel)
    burst_topic = np.take(users.burst_topic, win)
    stable_thr = np.take(users.stable_thr, uid)
    is_fav = comp < np.take(users.favourite_thr, uid)
    is_stable = comp < stable_thr
    # The burst takes its intensity's share of what is left after the stable part.
    burst_thr = stable_thr + np.take(users.burst_intensity_thr, win) * (LUT_SIZE - stable_thr)
    is_burst = ~is_stable & (comp < burst_thr)

    # pick bits: 15..10 choose a stable topic, 9..3 whether to follow the rotation, 2..0 a
    # favourite author (at most 8); the popular topic reads all 16.
    stable_topic = np.take(users.stable_pick, uid * 64 + (pick >> 10))
    if rotate:
        in_turn = ((pick >> 3) & 127) < int(world.config.model.stable_rotation * 128)
        stable_topic = np.where(in_turn, np.take(users.window_stable, win), stable_topic)
    topic = np.where(is_stable, stable_topic,
                     np.where(is_burst, burst_topic, np.take(cat.topic_lut, pick)))
    u = (bits[2].astype(np.float32) * np.float32(1 / LUT_SIZE)
         + bits[3].astype(np.float32) * np.float32(1 / LUT_SIZE**2))
    u = u * u * u  # ITEM_SKEW = 3: the head of each range is its popular items
    item = np.take(cat.topic_item_start, topic) + (
        u * np.take(cat.topic_item_count, topic)).astype(np.int64)
    if is_fav.any():
        sel = np.flatnonzero(is_fav)
        fav = users.favourites[uid[sel], pick[sel] & (users.favourites.shape[1] - 1)]
        item[sel] = cat.author_item_start[fav] + (
            u[sel] * cat.author_item_count[fav]).astype(np.int64)
    return item, burst_topic


def _affinity(world: World, users: Users, uid: np.ndarray, item: np.ndarray,
              burst_topic: np.ndarray) -> np.ndarray:
    """The user's affinity for each item at its time (float32)."""
    m, cat = world.config.model, world.catalogue
    topic = np.take(cat.item_topic, item)
    stable = np.take(users.stable_affinity, uid.astype(np.int64) * cat.n_topics + topic)
    aff = stable + np.take(cat.item_quality, item)
    aff += np.float32(m.base)
    aff[topic == burst_topic] += np.float32(m.burst)
    sel = np.flatnonzero(stable > 0)  # favourite authors live in stable topics
    if len(sel):
        author = np.take(cat.item_author, item[sel])
        fav = users.favourites[uid[sel]]
        hit = (fav == author[:, None]).any(axis=1)
        aff[sel[hit]] += np.float32(m.favourite_author)
    return aff


def _dwell(world: World, aff: np.ndarray, item: np.ndarray, media: np.ndarray,
           z_bits: np.ndarray, skip_bits: np.ndarray) -> np.ndarray:
    """Seconds the user spends on each item (float32)."""
    m, cat = world.config.model, world.catalogue
    dur = np.take(cat.item_duration, item)
    z = np.take(world.normal, z_bits)
    log_r = np.take(world.item_log_ratio_bias, item) + np.float32(m.ratio_slope) * aff \
        + np.float32(m.ratio_sigma) * z
    ratio = np.minimum(np.exp(log_r), np.float32(m.ratio_max))
    dwell = ratio * dur
    p_skip = 1.0 / (1.0 + np.exp(np.float32(m.skip_slope) * aff - np.float32(m.skip_bias)))
    skip = skip_bits < (p_skip * LUT_SIZE).astype(np.int32)
    # A skip's dwell is a uniform fraction of skip_max_s, read from the (unused) z bits.
    dwell = np.where(skip, z_bits * np.float32(m.skip_max_s / LUT_SIZE), dwell)
    still = media != VIDEO
    if still.any():
        sel = np.flatnonzero(still)
        med = np.where(media[sel] == PHOTO, np.float32(m.photo_median_s),
                       np.float32(m.carousel_median_s))
        dwell[sel] = med * np.exp(np.float32(m.still_slope) * aff[sel]
                                  + np.float32(m.still_sigma) * z[sel])
    return dwell.astype(np.float32, copy=False)


def _bucket(aff: np.ndarray) -> np.ndarray:
    b = ((aff - np.float32(AFF_LO)) * np.float32(AFF_BUCKETS / (AFF_HI - AFF_LO)))
    return np.clip(b, 0, AFF_BUCKETS - 1).astype(np.int32)


# ----------------------------------------------------------------------------- blocks

@dataclass
class Block:
    """One block's output tables."""

    events: pa.Table
    examples: pa.Table
    users: pa.Table
    bursts: pa.Table
    n_events: int


def _dictionary(codes: np.ndarray, values: pa.Array, mask: np.ndarray | None = None):
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32, copy=False),
                                                   mask=mask), values)


def _event_times(world: World, users: Users, uid: np.ndarray, offsets: np.ndarray,
                 gap_bits: np.ndarray, break_bits: np.ndarray) -> np.ndarray:
    """Sorted event times per user: sessions of short gaps, separated by long breaks."""
    m = world.config.model
    n_users = users.n
    within = (np.take(world.exponential, gap_bits)
              * np.float32(m.within_session_gap_s * 1000)).astype(np.int64)
    is_break = break_bits < int(m.session_break * LUT_SIZE)
    is_break[offsets[:-1]] = True  # each user's first event opens a session
    brk_w = np.take(world.exponential, LUT_SIZE - 1 - gap_bits)
    within_sum = np.bincount(uid, weights=np.where(is_break, 0, within), minlength=n_users)
    brk_sum = np.bincount(uid, weights=np.where(is_break, brk_w, 0), minlength=n_users)
    scale = np.maximum(users.span_ms - within_sum, 0) / brk_sum
    gap = np.where(is_break, (brk_w * np.take(scale, uid)).astype(np.int64), within)
    cs = np.cumsum(gap)
    base = np.zeros(n_users, dtype=np.int64)
    base[1:] = cs[offsets[1:-1] - 1]
    return np.take(users.start_ms, uid) + cs - np.take(base, uid)


def generate_block(world: World, block: int, first_user: int, n_users: int) -> Block:
    """Generate users ``first_user .. first_user + n_users - 1`` (block number ``block``)."""
    cfg, cat = world.config, world.catalogue
    rng = _stream(cfg.seed, STREAM_BLOCK, block)
    users = _draw_users(world, rng, np.arange(first_user, first_user + n_users, dtype=np.int64))
    n = int(users.n_events.sum())
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(users.n_events, out=offsets[1:])
    uid = np.repeat(np.arange(n_users, dtype=np.int32), users.n_events)
    bits = rng.bit_generator.random_raw(3 * n).view(np.uint16).reshape(12, n)

    ts = _event_times(world, users, uid, offsets, bits[4], bits[5])
    item, burst_topic = _draw_exposure(world, users, uid, ts - np.take(users.start_ms, uid),
                                       bits[0:4], rotate=True)
    aff = _affinity(world, users, uid, item, burst_topic)
    media = np.take(cat.item_media_type, item)
    bucket = _bucket(aff)
    explicit = bits[8] < np.take(world.explicit_thr, bucket)
    action = np.take(world.action_lut, bucket * LUT_SIZE + bits[9])
    dwell = _dwell(world, aff, item, media, bits[6], bits[7])
    surface = np.take(world.surface_lut, media.astype(np.int32) * LUT_SIZE + bits[10])

    v = world.vocab
    events = pa.Table.from_arrays([
        pa.array(np.take(users.user_id, uid)),
        pa.array(ts, TS_TYPE),
        _dictionary(np.where(explicit, EXPLICIT, IMPLICIT), pa.array(TIMELINES)),
        pa.array(item),
        pa.array(np.take(cat.item_author, item).astype(np.int64)),
        pa.array(np.take(cat.item_topic, item).astype(np.int64)),
        _dictionary(media, pa.array(v["media_type"])),
        _dictionary(surface, pa.array(v["surface"])),
        _dictionary(action, pa.array(v["action"]), mask=~explicit),
        pa.array(np.take(cat.item_duration, item), mask=media != VIDEO),
        pa.array(dwell, mask=explicit),
    ], schema=world.events_schema)

    n_explicit = np.bincount(uid, weights=explicit, minlength=n_users).astype(np.int64)
    return Block(events=events, examples=_examples(world, rng, users),
                 users=_users_truth(world, users, n_explicit),
                 bursts=_bursts_truth(users), n_events=n)


def _examples(world: World, rng: np.random.Generator, users: Users) -> pa.Table:
    cfg, m, cat = world.config, world.config.model, world.catalogue
    per_user = cfg.examples_per_user
    n = users.n * per_user
    window = cfg.days * DAY_MS
    uid = np.repeat(np.arange(users.n, dtype=np.int32), per_user)
    offset = (rng.random(n) * window).astype(np.int64)
    order = np.lexsort((offset, uid))
    request = PERIOD_END_MS - window + offset[order]
    bits = rng.bit_generator.random_raw(2 * n).view(np.uint16).reshape(8, n)
    item, burst_topic = _draw_exposure(world, users, uid, request - np.take(users.start_ms, uid),
                                       bits[0:4], rotate=False)
    aff = _affinity(world, users, uid, item, burst_topic)
    media = np.take(cat.item_media_type, item)
    surface = np.take(world.surface_lut, media.astype(np.int32) * LUT_SIZE + bits[4])
    dwell = _dwell(world, aff, item, media, bits[5], bits[6])
    dur = np.take(cat.item_duration, item)

    labels: dict[str, np.ndarray] = {}
    draws = rng.random((len(m.action_bias), n))
    for i, task in enumerate(m.action_bias):
        p = _sigmoid(m.action_bias[task] + m.action_slope[task] * aff)
        labels[task] = (draws[i] < p).astype(np.int8)
    video = media == VIDEO
    labels["complete"] = np.where(video, dwell >= dur, dwell >= m.complete_still_s).astype(np.int8)
    labels["skip"] = (dwell < m.skip_label_s).astype(np.int8)
    labels["watch_time"] = dwell

    dense = {
        "hour_of_day": ((request // 3_600_000) % 24) / 24.0,
        "day_of_week": ((request // DAY_MS + 3) % 7) / 7.0,  # Monday = 0
        "log_duration": np.where(video, np.log1p(np.nan_to_num(dur)), 0.0),
        "item_popularity": np.log10(np.take(cat.item_popularity, item) * cat.n_items),
    }
    v = world.vocab
    cols = [
        pa.array(np.take(users.user_id, uid)),
        pa.array(request, TS_TYPE),
        pa.array(item),
        pa.array(np.take(cat.item_author, item).astype(np.int64)),
        pa.array(np.take(cat.item_topic, item).astype(np.int64)),
        _dictionary(media, pa.array(v["media_type"])),
        _dictionary(surface, pa.array(v["surface"])),
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
    t = world.catalogue.n_topics
    aff = users.stable_affinity.reshape(users.n, t)
    rows, topics = np.nonzero(aff)
    # Strongest first within each user.
    order = np.lexsort((-aff[rows, topics], rows))
    rows, topics = rows[order], topics[order]
    off = np.zeros(users.n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=users.n), out=off[1:])
    f = users.favourites.shape[1]
    fav = np.sort(users.favourites, axis=1)
    return pa.Table.from_arrays([
        pa.array(users.user_id),
        pa.array(users.n_events),
        pa.array(n_explicit),
        pa.array(users.stable_share),
        pa.ListArray.from_arrays(pa.array(off), pa.array(topics.astype(np.int64))),
        pa.ListArray.from_arrays(pa.array(off), pa.array(aff[rows, topics])),
        pa.ListArray.from_arrays(pa.array(np.arange(users.n + 1, dtype=np.int32) * f),
                                 pa.array(fav.ravel().astype(np.int64))),
        pa.array((users.burst_len_ms / DAY_MS).astype(np.float32)),
    ], schema=USERS_TRUTH_SCHEMA)


def _bursts_truth(users: Users) -> pa.Table:
    w = np.arange(users.windows, dtype=np.int64)
    start = (users.start_ms - users.burst_phase_ms)[:, None] + w[None, :] * users.burst_len_ms[:, None]
    end = start + users.burst_len_ms[:, None]
    keep = (end > users.start_ms[:, None]) & (start < PERIOD_END_MS)
    rows = np.nonzero(keep)
    return pa.Table.from_arrays([
        pa.array(users.user_id[rows[0]]),
        pa.array(np.maximum(start[keep], users.start_ms[rows[0]]), TS_TYPE),
        pa.array(np.minimum(end[keep], PERIOD_END_MS), TS_TYPE),
        pa.array(users.burst_topic.reshape(users.n, -1)[keep].astype(np.int64)),
        pa.array(users.burst_intensity_thr.reshape(users.n, -1)[keep]),
    ], schema=BURSTS_TRUTH_SCHEMA)


# ----------------------------------------------------------------------------- writing

# Parquet settings for events, chosen by benchmarks/synth.py (see docs/benchmarks.md):
# dictionary encoding only where values repeat, delta encoding for sorted times, statistics
# only on the sort keys (min/max of dictionary columns is costly and useless).
EVENTS_COMPRESSION = "none"
EVENTS_PARQUET_OPTIONS = dict(
    use_dictionary=["user_id", "timeline", "topic_id", "media_type", "surface", "action"],
    write_statistics=["user_id", "ts"],
    column_encoding={"ts": "DELTA_BINARY_PACKED"},
)


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
    missing = set(world.tasks) - set(world.config.model.action_bias) - {
        "complete", "skip", "watch_time"}
    assert not missing, f"no label model for tasks {missing}"
    return world


def iter_blocks(world: World) -> Iterator[Block]:
    """The run's blocks in order (each about BLOCK_EVENTS events)."""
    cfg = world.config
    per = cfg.users_per_block
    for block, first in enumerate(range(0, cfg.users, per)):
        yield generate_block(world, block, first, min(per, cfg.users - first))


class _WriterThread:
    """Writes tables on a second thread so Parquet encoding overlaps generation."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=2)
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
        self._raise()
        self._queue.put(job)

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
               parquet_options: dict | None = None) -> SynthSummary:
    """Generate the data set into ``out`` (atomically; refuses to overwrite unless asked)."""
    config = config.resolved()
    out = Path(out)
    if out.exists() and not overwrite:
        raise UsageError(f"{out} already exists", where=str(out), hint="pass --force to replace it")
    world = _prepare(World.build(config))
    options = EVENTS_PARQUET_OPTIONS if parquet_options is None else parquet_options
    totals = {"events": 0, "explicit": 0, "examples": 0}
    with staged_output(out, overwrite=overwrite) as stage:
        truth = stage / "truth"
        truth.mkdir()
        _write_items(world, truth / "items.parquet")
        (truth / "params.json").write_text(json.dumps(params(world), indent=2, sort_keys=True))
        events = DatasetWriter(stage / "events", world.events_schema, compression=compression,
                               parquet_options=options)
        examples = DatasetWriter(stage / "examples", world.examples_schema)
        users_w = pq.ParquetWriter(truth / "users.parquet", USERS_TRUTH_SCHEMA, compression="zstd")
        bursts_w = pq.ParquetWriter(truth / "bursts.parquet", BURSTS_TRUTH_SCHEMA,
                                    compression="zstd")
        writer = _WriterThread()
        try:
            for block in iter_blocks(world):
                def job(b: Block = block) -> None:
                    events.write(b.events)
                    examples.write(b.examples)
                    users_w.write_table(b.users)
                    bursts_w.write_table(b.bursts)
                writer.submit(job)
                totals["events"] += block.n_events
                totals["explicit"] += int(np.sum(block.users.column("n_explicit")))
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
    pq.write_table(table, path, compression="zstd")
