"""The generator's world: the item catalogue and the lookup tables its samplers read.

The catalogue is a fixed set of topics, authors and media items with heavily skewed
popularity. It is laid out so that sampling is a couple of gathers per event:

* authors are sorted by (topic, popularity), so the authors of topic ``t`` are the contiguous
  range ``author_start[t] : author_start[t] + author_count[t]`` with the most popular first;
* items are sorted by (topic, author, popularity), so the items of topic ``t`` and the items
  of author ``a`` are contiguous ranges too, again most popular first.

Drawing "an item of topic t" is then ``start + floor(skew(u) * count)`` with ``skew`` a
power law concentrated on the front of the range (popular authors' popular items). A media
item's id is its position in this order; authors' and topics' ids likewise.

Continuous random variates are read from 65,536-entry quantile tables indexed by 16-bit
uniforms (cheap raw bits), which is exact enough for synthetic data and avoids the cost of
transcendental functions per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

LUT_SIZE = 1 << 16

# Media types in catalogue order; they must be the first entries of the declared vocabulary.
VIDEO, PHOTO, CAROUSEL = 0, 1, 2
MEDIA_TYPE_SHARES = (0.85, 0.11, 0.04)

# Video durations: log-normal in seconds, fitted to KuaiRand-Pure's duration_ms (median about
# 70 s, inter-quartile range about 27..160 s), clipped to what short-video apps allow.
DURATION_MEDIAN_S = 68.0
DURATION_SIGMA = 1.05
DURATION_MIN_S, DURATION_MAX_S = 3.0, 600.0

# Zipf exponents: how skewed topic, author and item popularity are.
TOPIC_ZIPF = 1.0
AUTHOR_ZIPF = 1.1
# Within a topic's (or an author's) range, position x in [0, 1) is drawn as u**ITEM_SKEW:
# density ~ x^(1/ITEM_SKEW - 1), a heavy head of popular items and a long tail.
ITEM_SKEW = 3


@dataclass(frozen=True)
class Catalogue:
    """Topics, authors and media items of the synthetic world (ids are array positions)."""

    n_topics: int
    topic_popularity: np.ndarray  # float64 [T], sums to 1
    author_topic: np.ndarray  # int32 [A]
    author_start: np.ndarray  # int64 [T]: first author of each topic
    author_count: np.ndarray  # int64 [T]
    item_author: np.ndarray  # int32 [I]
    item_topic: np.ndarray  # int32 [I]
    item_media_type: np.ndarray  # int8 [I]
    item_duration: np.ndarray  # float32 [I], NaN for photos and carousels
    item_quality: np.ndarray  # float32 [I], the item's intrinsic appeal (affinity offset)
    item_popularity: np.ndarray  # float32 [I], probability of being drawn as a popular item
    topic_item_start: np.ndarray  # int64 [T]
    topic_item_count: np.ndarray  # int64 [T]
    author_item_start: np.ndarray  # int64 [A]
    author_item_count: np.ndarray  # int64 [A]
    topic_lut: np.ndarray  # int32 [LUT_SIZE]: 16-bit uniform -> topic by popularity

    @property
    def n_authors(self) -> int:
        return len(self.author_topic)

    @property
    def n_items(self) -> int:
        return len(self.item_author)


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    """Probabilities proportional to 1 / rank**exponent for ranks 1..n."""
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return w / w.sum()


def inverse_cdf_lut(probabilities: np.ndarray, size: int = LUT_SIZE) -> np.ndarray:
    """A table mapping a uniform index in [0, size) to an index drawn with ``probabilities``."""
    cdf = np.cumsum(probabilities)
    cdf /= cdf[-1]
    grid = (np.arange(size, dtype=np.float64) + 0.5) / size
    return np.minimum(np.searchsorted(cdf, grid, side="right"), len(cdf) - 1).astype(np.int32)


def normal_lut() -> np.ndarray:
    """Standard normal quantiles at the midpoints of 65,536 equal-probability cells."""
    inv = NormalDist().inv_cdf
    grid = (np.arange(LUT_SIZE, dtype=np.float64) + 0.5) / LUT_SIZE
    return np.array([inv(p) for p in grid], dtype=np.float32)


def exponential_lut() -> np.ndarray:
    """Unit-mean exponential quantiles at the midpoints of 65,536 cells."""
    grid = (np.arange(LUT_SIZE, dtype=np.float64) + 0.5) / LUT_SIZE
    return (-np.log1p(-grid)).astype(np.float32)


def _ranges(sorted_keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    count = np.bincount(sorted_keys, minlength=n_keys).astype(np.int64)
    start = np.zeros(n_keys, dtype=np.int64)
    np.cumsum(count[:-1], out=start[1:])
    return start, count


def _range_popularity(start: np.ndarray, count: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Probability of each position under the ``u**ITEM_SKEW`` draw within its owner's range."""
    pos = np.arange(len(owner), dtype=np.float64) - start[owner]
    n = count[owner].astype(np.float64)
    return (((pos + 1) / n) ** (1 / ITEM_SKEW) - (pos / n) ** (1 / ITEM_SKEW))


def build_catalogue(
    rng: np.random.Generator, n_topics: int, n_authors: int, n_items: int
) -> Catalogue:
    """Draw a catalogue; every topic has an author and every author an item."""
    if not (1 <= n_topics <= n_authors <= n_items):
        raise ValueError("need 1 <= topics <= authors <= items")
    topic_pop = zipf_weights(n_topics, TOPIC_ZIPF)[rng.permutation(n_topics)]

    # Authors: the first n_topics cover every topic once; the rest follow topic popularity.
    author_topic = np.concatenate(
        [np.arange(n_topics), rng.choice(n_topics, n_authors - n_topics, p=topic_pop)]
    )
    author_weight = zipf_weights(n_authors, AUTHOR_ZIPF)[rng.permutation(n_authors)]
    # Sort authors by (topic, popularity desc); an author's id is its position.
    order = np.lexsort((-author_weight, author_topic))
    author_topic = author_topic[order].astype(np.int32)
    author_weight = author_weight[order]
    author_start, author_count = _ranges(author_topic, n_topics)

    # Items: every author has one, the rest follow author popularity (a multinomial count
    # per author: much faster than drawing each item's author at the paper's scale). Items
    # are laid out by author, and authors are already in (topic, popularity) order.
    per_author = 1 + rng.multinomial(n_items - n_authors, author_weight / author_weight.sum())
    item_author = np.repeat(np.arange(n_authors, dtype=np.int32), per_author)
    item_topic = author_topic[item_author]
    topic_item_start, topic_item_count = _ranges(item_topic, n_topics)
    author_item_start, author_item_count = _ranges(item_author, n_authors)

    media_type = rng.choice(3, n_items, p=MEDIA_TYPE_SHARES).astype(np.int8)
    duration = np.exp(np.log(DURATION_MEDIAN_S) + DURATION_SIGMA * rng.standard_normal(n_items))
    duration = np.round(np.clip(duration, DURATION_MIN_S, DURATION_MAX_S), 3).astype(np.float32)
    duration[media_type != VIDEO] = np.nan
    quality = (0.3 * rng.standard_normal(n_items)).astype(np.float32)

    item_pop = topic_pop[item_topic] * _range_popularity(topic_item_start, topic_item_count,
                                                         item_topic)
    return Catalogue(
        n_topics=n_topics,
        topic_popularity=topic_pop,
        author_topic=author_topic,
        author_start=author_start,
        author_count=author_count,
        item_author=item_author,
        item_topic=item_topic,
        item_media_type=media_type,
        item_duration=duration,
        item_quality=quality,
        item_popularity=item_pop.astype(np.float32),
        topic_item_start=topic_item_start,
        topic_item_count=topic_item_count,
        author_item_start=author_item_start,
        author_item_count=author_item_count,
        topic_lut=inverse_cdf_lut(topic_pop),
    )
