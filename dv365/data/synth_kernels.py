"""The generator's per-event model, compiled: one pass per block, no temporaries.

A NumPy formulation of the same model needed ~100 passes over each block's arrays and ran
at ~2 M events/s; these Numba kernels compute each event's columns in one go and write them
once (see docs/benchmarks.md). They release the GIL, so Parquet encoding of the previous
block proceeds on the other core meanwhile. They are deliberately single-threaded: generating
and encoding cost about the same CPU per event, so one thread each balances two cores, while
a parallel kernel's waiting worker threads took CPU from the writer (measured: -12%).

Randomness is counter-based: event ``i``'s random word ``j`` is ``splitmix64(key + (4 i + j)
* golden)`` with a 64-bit ``key`` per block and purpose, drawn from NumPy's SeedSequence. Each
word gives four 16-bit uniforms (:data:`WORDS`). Nothing random is stored, every event's
draws are independent of how users are scheduled over threads, and the output is a
deterministic function of the keys (and of nothing else: not of scheduling or chunking).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from dv365.data.schema import EXPLICIT, IMPLICIT
from dv365.data.synth_world import LUT_SIZE, PHOTO, VIDEO

# The three random words of an event and the 16-bit uniforms each holds (low bits first).
WORDS = (("component", "pick", "item_high", "item_low"),
         ("gap", "break", "noise", "skip"),
         ("explicit", "action", "surface", "complete"))
W_EXPOSURE, W_TIME, W_REACTION = 0, 1, 2

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_U16 = np.uint64(0xFFFF)


@njit(inline="always")
def _word(key: np.uint64, i: np.int64, j: int) -> np.uint64:
    """splitmix64 of event i's word j under key."""
    z = key + np.uint64(4 * i + j) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def _u16(word: np.uint64, slot: int) -> np.int64:
    return np.int64((word >> np.uint64(16 * slot)) & _U16)


def draws(key: int, n: int, word: int) -> np.ndarray:
    """The 16-bit uniforms of events 0..n-1's ``word`` as uint16 [n, 4] (for tests/analysis)."""
    out = np.empty((n, 4), np.uint16)
    _fill_draws(np.uint64(key), word, out)
    return out


@njit(cache=True)
def _fill_draws(key, word, out):  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        w = _word(key, i, word)
        for s in range(4):
            out[i, s] = _u16(w, s)

# Video durations in DURATION_BUCKETS log-spaced buckets, for tables that depend on duration.
DURATION_BUCKETS = 16
DURATION_LO_S, DURATION_HI_S = 3.0, 900.0


def duration_bucket(seconds: np.ndarray) -> np.ndarray:
    """The duration bucket of each video (int8); stills (NaN) get the bucket of 60 s, where
    duration terms are about zero."""
    step = np.log(DURATION_HI_S / DURATION_LO_S) / DURATION_BUCKETS
    b = np.floor(np.log(np.nan_to_num(seconds, nan=60.0) / DURATION_LO_S) / step)
    return np.clip(b, 0, DURATION_BUCKETS - 1).astype(np.int8)


def duration_centres() -> np.ndarray:
    """Seconds at the (geometric) centre of each duration bucket."""
    step = np.log(DURATION_HI_S / DURATION_LO_S) / DURATION_BUCKETS
    return DURATION_LO_S * np.exp(step * (np.arange(DURATION_BUCKETS) + 0.5))


# What the kernels read about an item, packed so that a random item costs one cache miss
# (the paper-scale catalogue has 2 M items, far beyond the caches).
ITEM_DTYPE = np.dtype([
    ("topic", np.int32),
    ("author", np.int32),
    ("duration", np.float32),  # NaN for stills
    ("quality", np.float32),
    ("ratio", np.float32),  # median partial-watch odds given the duration
    ("media_type", np.int8),
    ("duration_bucket", np.int8),
    ("pad", np.int16),
], align=True)


class CatalogueArrays(NamedTuple):
    """The catalogue as the kernels read it."""

    items: np.ndarray  # ITEM_DTYPE [I]: one 24-byte record per item, one cache line to read
    topic_item_start: np.ndarray  # int64 [T]
    topic_item_count: np.ndarray  # int64 [T]
    author_item_start: np.ndarray  # int64 [A]
    author_item_count: np.ndarray  # int64 [A]
    topic_lut: np.ndarray  # int32 [LUT_SIZE]
    n_topics: int


class UserArrays(NamedTuple):
    """One block's users as the kernels read them (flat per-user tables)."""

    user_id: np.ndarray  # int64 [n]
    start_ms: np.ndarray  # int64 [n]
    span_ms: np.ndarray  # int64 [n]
    stable_thr: np.ndarray  # int32 [n]
    favourite_thr: np.ndarray  # int32 [n]
    stable_pick: np.ndarray  # int32 [n * 64]
    window_stable: np.ndarray  # int32 [n * W]
    stable_affinity: np.ndarray  # float32 [n * T]
    favourites: np.ndarray  # int32 [n, F]
    burst_len_ms: np.ndarray  # int64 [n]
    burst_phase_ms: np.ndarray  # int64 [n]
    burst_topic: np.ndarray  # int32 [n * W]
    burst_share: np.ndarray  # float32 [n * W]
    windows: int


# Affinity is quantized to 1/AFF_STEPS for table lookups (scalar exp costs ~20 ns here);
# actions use coarser buckets of ACTION_SHIFT fine steps and 12-bit draws (small tables
# that stay in cache).
AFF_LO, AFF_HI, AFF_STEPS = -2.5, 4.5, 64
AFF_FINE = int((AFF_HI - AFF_LO) * AFF_STEPS)
ACTION_SHIFT = 4
ACTION_BUCKETS = AFF_FINE >> ACTION_SHIFT
CHOICE_BITS = 12


def affinity_centres(fine: bool = True) -> np.ndarray:
    """The affinity at the centre of each fine step (or of each action bucket)."""
    width = 1.0 / AFF_STEPS * (1 if fine else 1 << ACTION_SHIFT)
    count = AFF_FINE if fine else ACTION_BUCKETS
    return AFF_LO + width * (np.arange(count) + 0.5)


class Tables(NamedTuple):
    """Lookup tables of one run."""

    exponential: np.ndarray  # float32 [LUT_SIZE]: unit exponential quantiles
    ratio_noise: np.ndarray  # float32 [LUT_SIZE]: exp(ratio_sigma * z)
    still_noise: np.ndarray  # float32 [LUT_SIZE]: exp(still_sigma * z)
    ratio_affinity: np.ndarray  # float32 [AFF_FINE]: exp(ratio_slope * a)
    still_affinity: np.ndarray  # float32 [AFF_FINE]: exp(still_slope * a)
    skip_thr: np.ndarray  # int32 [AFF_FINE]: P(skip | a) * LUT_SIZE
    complete_thr: np.ndarray  # int32 [AFF_FINE * DURATION_BUCKETS]: P(finish | a, d, no skip)
    explicit_thr: np.ndarray  # int32 [AFF_FINE * DURATION_BUCKETS]: P(explicit | a, d)
    surface_lut: np.ndarray  # int8 [3 << CHOICE_BITS]: (media type, bits) -> surface
    action_lut: np.ndarray  # int8 [ACTION_BUCKETS << CHOICE_BITS]: (bucket, bits) -> action


class Constants(NamedTuple):
    """Scalar parameters of the affinity, dwell and session model (see AffinityModel)."""

    base: float
    favourite_author: float
    burst: float
    rotation_128: int
    skip_max_s: float
    replay_max: float
    photo_median_s: float
    carousel_median_s: float
    within_gap_ms: float
    break_thr: int


@njit(cache=True, nogil=True)
def event_times(key: np.uint64, offsets: np.ndarray, users: UserArrays, tables: Tables,
                k: Constants, out_ts: np.ndarray) -> None:
    """Sorted times per user: sessions of short exponential gaps, separated by breaks that
    share out the rest of the user's span (each user's first event opens a session)."""
    exp_lut = tables.exponential
    for u in range(len(offsets) - 1):
        lo, hi = offsets[u], offsets[u + 1]
        within_sum = 0.0
        break_sum = 0.0
        for i in range(lo, hi):
            w = _word(key, i, W_TIME)
            gap = _u16(w, 0)
            if i == lo or _u16(w, 1) < k.break_thr:
                break_sum += exp_lut[LUT_SIZE - 1 - gap]
            else:
                within_sum += np.int64(exp_lut[gap] * k.within_gap_ms)
        scale = max(users.span_ms[u] - within_sum, 0.0) / break_sum
        t = users.start_ms[u]
        for i in range(lo, hi):
            w = _word(key, i, W_TIME)
            gap = _u16(w, 0)
            if i == lo or _u16(w, 1) < k.break_thr:
                t += np.int64(exp_lut[LUT_SIZE - 1 - gap] * scale)
            else:
                t += np.int64(exp_lut[gap] * k.within_gap_ms)
            out_ts[i] = t


# Events per chunk of the impressions kernel (their item records stay in cache meanwhile).
CHUNK = 256


@njit(inline="always")
def _window(dt: np.int64, length: np.int64, inv_length: float) -> np.int64:
    """dt // length by a multiply and an exact correction (division costs ~10 ns)."""
    w = np.int64(dt * inv_length)
    if w * length > dt:
        w -= 1
    elif (w + 1) * length <= dt:
        w += 1
    return w


@njit(cache=True, nogil=True)
def impressions(key: np.uint64, offsets: np.ndarray, ts: np.ndarray, rotate: bool,
                cat: CatalogueArrays, users: UserArrays, tables: Tables, k: Constants,
                out_user: np.ndarray, out_item: np.ndarray, out_author: np.ndarray,
                out_topic: np.ndarray, out_media: np.ndarray, out_surface: np.ndarray,
                out_timeline: np.ndarray, out_action: np.ndarray, out_duration: np.ndarray,
                out_dwell: np.ndarray, out_affinity: np.ndarray) -> None:
    """What each user was shown at each time, how much they liked it, and what they did.

    Exposure: a favourite author's item, a stable topic (with ``rotate``, mostly the one in
    turn in the current window), the window's burst topic, or a popular topic, chosen by
    the user's shares; then an item of that author or topic, skewed to the popular head.
    Affinity: base + stable(topic) + favourite(author) + burst(topic) + quality(item).
    Dwell, explicit-or-implicit and the action follow from the affinity.
    """
    n_fav = users.favourites.shape[1]
    n_topics = cat.n_topics
    for u in range(len(offsets) - 1):
        uid = users.user_id[u]
        burst_len = users.burst_len_ms[u]
        inv_len = 1.0 / burst_len
        t0 = users.start_ms[u] - users.burst_phase_ms[u]
        stable_thr = users.stable_thr[u]
        fav_thr = users.favourite_thr[u]
        # In chunks: choose the items, then touch their records in a tight loop (the misses
        # overlap: at paper scale the catalogue is far larger than the caches and a random
        # item costs ~65 ns when read alone), then compute the reactions from cache.
        for c0 in range(offsets[u], offsets[u + 1], CHUNK):
            c1 = min(c0 + CHUNK, offsets[u + 1])
            for i in range(c0, c1):
                # --- exposure
                win = u * users.windows + _window(ts[i] - t0, burst_len, inv_len)
                burst_topic = users.burst_topic[win]
                w_exp = _word(key, i, W_EXPOSURE)
                comp = _u16(w_exp, 0)
                pick = _u16(w_exp, 1)
                x = (_u16(w_exp, 2) + _u16(w_exp, 3) * (1.0 / LUT_SIZE)) * (1.0 / LUT_SIZE)
                x = x * x * x  # ITEM_SKEW = 3: the popular head of each range
                if comp < fav_thr:
                    a = users.favourites[u, pick & (n_fav - 1)]
                    item = cat.author_item_start[a] + np.int64(x * cat.author_item_count[a])
                else:
                    if comp < stable_thr:
                        if rotate and ((pick >> 3) & 127) < k.rotation_128:
                            topic = users.window_stable[win]
                        else:
                            topic = users.stable_pick[u * 64 + (pick >> 10)]
                    elif comp < stable_thr + users.burst_share[win] * (LUT_SIZE - stable_thr):
                        topic = burst_topic
                    else:
                        topic = cat.topic_lut[pick]
                    item = cat.topic_item_start[topic] + np.int64(
                        x * cat.topic_item_count[topic])
                out_item[i] = item
            touched = np.int32(0)
            for i in range(c0, c1):
                touched ^= cat.items[out_item[i]].topic
            out_topic[c0] = touched  # keeps the touch loop; overwritten below
            for i in range(c0, c1):
                item = out_item[i]
                burst_topic = users.burst_topic[
                    u * users.windows + _window(ts[i] - t0, burst_len, inv_len)]
                w_time = _word(key, i, W_TIME)
                w_react = _word(key, i, W_REACTION)
                # --- affinity
                rec = cat.items[item]
                topic = rec.topic
                author = rec.author
                stable = users.stable_affinity[u * n_topics + topic]
                aff = k.base + stable + rec.quality
                if topic == burst_topic:
                    aff += k.burst
                if stable > 0:  # favourite authors live in stable topics
                    for j in range(n_fav):
                        if users.favourites[u, j] == author:
                            aff += k.favourite_author
                            break
                # --- dwell
                fa = np.int64((aff - AFF_LO) * AFF_STEPS)
                fa = min(max(fa, 0), AFF_FINE - 1)
                media = rec.media_type
                dur = rec.duration
                noise_bits = _u16(w_time, 2)
                if media == VIDEO:
                    if _u16(w_time, 3) < tables.skip_thr[fa]:
                        # a quick skip: uniform in [0, skip_max_s), from the unused noise bits
                        dwell = min(noise_bits * (k.skip_max_s / LUT_SIZE), dur)
                    elif _u16(w_react, 3) < tables.complete_thr[
                            fa * DURATION_BUCKETS + rec.duration_bucket]:
                        # watched to the end, sometimes a little into a replay
                        dwell = dur * (1.0 + noise_bits * (k.replay_max / LUT_SIZE))
                    else:
                        # a partial watch: log-normal odds, squashed into (0, 1)
                        odds = (rec.ratio * tables.ratio_affinity[fa]
                                * tables.ratio_noise[noise_bits])
                        dwell = dur * odds / (1.0 + odds)
                else:
                    median = k.photo_median_s if media == PHOTO else k.carousel_median_s
                    dwell = median * tables.still_affinity[fa] * tables.still_noise[noise_bits]
                # --- explicit action or implicit impression
                explicit = _u16(w_react, 0) < tables.explicit_thr[
                    fa * DURATION_BUCKETS + rec.duration_bucket]
                choice_shift = 16 - CHOICE_BITS
                out_user[i] = uid
                out_author[i] = author
                out_topic[i] = topic
                out_media[i] = media
                out_surface[i] = tables.surface_lut[(np.int64(media) << CHOICE_BITS)
                                                    + (_u16(w_react, 2) >> choice_shift)]
                out_timeline[i] = EXPLICIT if explicit else IMPLICIT
                out_action[i] = tables.action_lut[((fa >> ACTION_SHIFT) << CHOICE_BITS)
                                                  + (_u16(w_react, 1) >> choice_shift)]
                out_duration[i] = dur
                out_dwell[i] = dwell
                out_affinity[i] = aff


class Impressions(NamedTuple):
    """Columns produced by :func:`run_impressions`."""

    user_id: np.ndarray
    media_id: np.ndarray
    author_id: np.ndarray
    topic_id: np.ndarray
    media_type: np.ndarray
    surface: np.ndarray
    timeline: np.ndarray
    action: np.ndarray
    video_duration: np.ndarray
    dwell_time: np.ndarray
    affinity: np.ndarray


IMPRESSION_DTYPES = dict(
    user_id=np.int64, media_id=np.int64, author_id=np.int64, topic_id=np.int64,
    media_type=np.int32, surface=np.int32, timeline=np.int32, action=np.int32,
    video_duration=np.float32, dwell_time=np.float32, affinity=np.float32,
)


def allocate_impressions(n: int) -> Impressions:
    """Uninitialised output columns for ``n`` impressions."""
    return Impressions(**{name: np.empty(n, dtype) for name, dtype in IMPRESSION_DTYPES.items()})


def run_impressions(key: int, offsets: np.ndarray, ts: np.ndarray, rotate: bool,
                    cat: CatalogueArrays, users: UserArrays, tables: Tables,
                    k: Constants, out: Impressions | None = None) -> Impressions:
    """Run :func:`impressions` into ``out`` (at least ``len(ts)`` long) or fresh columns."""
    n = len(ts)
    out = allocate_impressions(n) if out is None else Impressions(*(a[:n] for a in out))
    impressions(np.uint64(key), offsets, ts, rotate, cat, users, tables, k, *out)
    return out
