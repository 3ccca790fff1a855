"""MovieLens (GroupLens) ratings -> UniTi events and examples.

The release is detected from the ratings file's name, found in ``SRC`` (a folder, searched
recursively, or the ratings file itself); each file's delimiter is sniffed (comma, tab,
semicolon, pipe, ``::``), and the ratings file's may be forced:

=============  ==========================================  =====================
ratings file   layout                                      movies file (optional)
=============  ==========================================  =====================
``ratings.csv``  ``userId,movieId,rating,timestamp`` + header  ``movies.csv``
``ratings.dat``  ``UserID::MovieID::Rating::Timestamp``        ``movies.dat``
``u.data``       tab-separated ``user item rating timestamp``   ``u.item``
=============  ==========================================  =====================

The mapping (docs/importers.md has the full table):

* A rating is one **explicit** event at its timestamp (seconds -> ms) with action ``like``
  (rating >= 4), ``dislike`` (rating <= 2) or ``rate`` (in between), and one **example** with
  ``request_ts`` = the same time and labels ``like``, ``dislike`` (binary) and ``rating``
  (regression, the stars). There is no implicit timeline: MovieLens logs no views.
* ``media_id`` = movie id, ``media_type`` ``movie``, ``surface`` ``catalog``.
* ``topic_id`` is the movie's rarest genre in the movies file (the genre fewest of its movies
  have; ties to the lower number), so the topic does not depend on the order GroupLens spells
  genres in (alphabetical, which made Action win every tie). ``unknown`` and ``IMAX`` (a screen
  format, not a subject) are chosen only for a movie with no other genre. Genres are numbered
  as in the 100K release's ``u.genre`` (0 unknown, 1 Action, ... 18 Western) plus 19 IMAX;
  later releases' ``Children`` is ``Children's`` (4) and ``(no genres listed)`` is 0; a genre
  outside that list gets 100 + its rank among such names in alphabetical order. Without a
  movies file every topic is 0 (with a note).
* ``author_id`` is ``UNKNOWN_AUTHOR`` (-1): MovieLens records no author, director or studio,
  and inventing one would give the model signal that is not in the data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dv365.console import progress
from dv365.data.importers.delimited import (
    TextFormat,
    TextTable,
    parse_delimiter,
    read_text_columns,
    sniff_format,
)
from dv365.data.importers.imported_log import (
    UNKNOWN_AUTHOR,
    ImportedLog,
    ImportSummary,
    side_table_positions,
    write_data_folder,
)
from dv365.data.schema import EXPLICIT, TS_MAX_MS, label_column
from dv365.errors import DataError, NotFoundError

SOURCE = "movielens"

GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western", "IMAX")
GENRE_ALIASES = {"Children": "Children's", "(no genres listed)": "unknown"}
UNLISTED_GENRE_BASE = 100
# Genres that say nothing of a movie's subject: its topic only when it has no other genre.
FALLBACK_GENRES = ("unknown", "IMAX")

ACTIONS = ["like", "dislike", "rate"]
LIKE_AT_LEAST = 4.0
DISLIKE_AT_MOST = 2.0
MIN_RATING, MAX_RATING = 0.5, 5.0
TASKS = {"like": "binary", "dislike": "binary", "rating": "regression"}

_RATING_COLUMNS = ("userId", "movieId", "rating", "timestamp")
_RATING_TYPES = {"userId": pa.int64(), "movieId": pa.int64(), "rating": pa.float64(),
                 "timestamp": pa.int64()}
_U_ITEM_GENRE_FLAGS = tuple(f"genre_{i}" for i in range(19))


@dataclass(frozen=True)
class MovieLensRelease:
    """One GroupLens layout: its ratings file and the movies file that goes with it."""

    ratings_name: str
    ratings_format: TextFormat
    movies_name: str
    movies_format: TextFormat


RELEASES = (
    MovieLensRelease(
        "ratings.csv", TextFormat(","),
        "movies.csv", TextFormat(",", encoding="latin-1"),
    ),
    MovieLensRelease(
        "ratings.dat", TextFormat("::", header=False, names=_RATING_COLUMNS, quoting=False),
        "movies.dat", TextFormat("::", header=False, names=("movieId", "title", "genres"),
                                 quoting=False, encoding="latin-1"),
    ),
    MovieLensRelease(
        "u.data", TextFormat("\t", header=False, names=_RATING_COLUMNS, quoting=False),
        "u.item", TextFormat("|", header=False, quoting=False, encoding="latin-1",
                             names=("movieId", "title", "release_date", "video_release_date",
                                    "imdb_url", *_U_ITEM_GENRE_FLAGS)),
    ),
)


@dataclass(frozen=True)
class MovieLensInputs:
    release: MovieLensRelease
    ratings: Path
    movies: Path | None


def find_inputs(src: str | os.PathLike) -> MovieLensInputs:
    """The ratings file under ``src`` (exactly one), its release and its movies file."""
    src = Path(src)
    if not src.exists():
        raise NotFoundError(f"{src} does not exist", where=str(src))
    names = {r.ratings_name: r for r in RELEASES}
    if src.is_file():
        found = [src] if src.name in names else []
    else:
        found = sorted(p for name in names for p in src.rglob(name) if p.is_file())
    if not found:
        raise NotFoundError("no MovieLens ratings file (ratings.csv, ratings.dat or u.data)",
                            where=str(src))
    if len(found) > 1:
        raise DataError(f"several ratings files: {', '.join(map(str, found))}", where=str(src),
                        hint="point SRC at the folder of one release")
    ratings = found[0]
    release = names[ratings.name]
    movies = ratings.parent / release.movies_name
    return MovieLensInputs(release, ratings, movies if movies.is_file() else None)


@dataclass(frozen=True)
class _Movies:
    ids: np.ndarray  # sorted
    topic_id: np.ndarray


def genre_topic_ids(genres: pa.Array) -> np.ndarray:
    """Topic ids of a catalogue's ``movies.csv``/``movies.dat`` genre lists (``"Comedy|Drama"``,
    one per movie): each movie's rarest genre in this catalogue, by number (see the module
    docstring)."""
    lists = pc.split_pattern(pc.fill_null(genres, ""), "|")
    names = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    for alias, name in GENRE_ALIASES.items():
        names = pc.if_else(pc.equal(names, alias), name, names)
    names = pc.if_else(pc.equal(names, ""), "unknown", names)
    known = pc.index_in(names, value_set=pa.array(GENRES))
    unlisted = pc.filter(names, pc.is_null(known))
    extra = sorted(set(pc.unique(unlisted).to_pylist())) if len(unlisted) else []
    numbers = pc.coalesce(known, pc.add(pc.index_in(names, value_set=pa.array(extra, pa.string())),
                                        UNLISTED_GENRE_BASE))
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    movie = np.repeat(np.arange(len(genres)), lengths)  # every list holds at least ""
    return rarest_genres(movie, numbers.to_numpy(zero_copy_only=False).astype(np.int64),
                         len(genres))


def rarest_genres(movie: np.ndarray, genre: np.ndarray, n_movies: int) -> np.ndarray:
    """For each of ``n_movies`` movies, the genre number among its ``(movie, genre)`` pairs
    that the fewest movies have; :data:`FALLBACK_GENRES` only when it has no other, ties to the
    lower number, 0 (unknown) for a movie without pairs."""
    width = int(genre.max()) + 1 if genre.size else 1
    pairs = np.unique(movie.astype(np.int64) * width + genre)  # a genre listed twice counts once
    movie, genre = pairs // width, pairs % width
    movies_with = np.bincount(genre, minlength=width)
    fallback = np.isin(genre, [GENRES.index(g) for g in FALLBACK_GENRES])
    order = np.lexsort((genre, movies_with[genre], fallback, movie))
    first = order[np.r_[True, movie[order][1:] != movie[order][:-1]]] if order.size else order
    topic = np.zeros(n_movies, dtype=np.int64)
    topic[movie[first]] = genre[first]
    return topic


def _read_movies(path: Path, release: MovieLensRelease) -> _Movies:
    if release.movies_name == "u.item":
        columns = {"movieId": pa.int64(), **{f: pa.int8() for f in _U_ITEM_GENRE_FLAGS}}
        fmt = sniff_format(path, release.movies_format)
        text = read_text_columns(path, fmt, columns)
        flags = np.column_stack([text.table.column(f).to_numpy() for f in _U_ITEM_GENRE_FLAGS])
        movie, genre = np.nonzero(flags == 1)
        topic = rarest_genres(movie, genre, text.table.num_rows)
    else:
        columns = {"movieId": pa.int64(), "genres": pa.string()}
        fmt = sniff_format(path, release.movies_format, columns)
        text = read_text_columns(path, fmt, columns, nullable=["genres"])
        topic = genre_topic_ids(text.table.column("genres").combine_chunks())
    ids = text.table.column("movieId").to_numpy()
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if dup.size:
        raise text.fail(int(order[dup[0] + 1]), f"movie {sorted_ids[dup[0]]} appears twice")
    return _Movies(sorted_ids, topic[order])


def _check_ratings(text: TextTable) -> tuple[np.ndarray, ...]:
    t = text.table
    users = t.column("userId").to_numpy()
    movies = t.column("movieId").to_numpy()
    rating = t.column("rating").to_numpy()
    seconds = t.column("timestamp").to_numpy()
    bad = np.flatnonzero(~((rating >= MIN_RATING) & (rating <= MAX_RATING)))
    if bad.size:
        i = int(bad[0])
        raise text.fail(i, f"rating {rating[i]:g} is outside {MIN_RATING:g}..{MAX_RATING:g}")
    bad = np.flatnonzero((seconds < 0) | (seconds >= TS_MAX_MS // 1000))
    if bad.size:
        i = int(bad[0])
        raise text.fail(i, f"timestamp {seconds[i]} is not a time in seconds before 2100")
    return users, movies, rating, seconds * 1000


def import_movielens(src: str | os.PathLike, out: str | os.PathLike, *,
                     overwrite: bool = False, delimiter: str | None = None) -> ImportSummary:
    """Import the MovieLens release under ``src`` into the data folder ``out``.

    ``delimiter`` forces the ratings file's delimiter (see :func:`parse_delimiter`); by default
    it is sniffed. The movies file's is always sniffed.
    """
    forced = parse_delimiter(delimiter) if delimiter is not None else None
    inputs = find_inputs(src)
    release = inputs.release
    ratings_format = (replace(release.ratings_format, delimiter=forced) if forced is not None
                      else sniff_format(inputs.ratings, release.ratings_format, _RATING_TYPES))
    with progress(f"reading {inputs.ratings.name}", total=2) as advance:
        movies = _read_movies(inputs.movies, release) if inputs.movies else None
        advance(1)
        text = read_text_columns(inputs.ratings, ratings_format, _RATING_TYPES)
        advance(1)
    users, movie_ids, rating, ts = _check_ratings(text)
    notes = []
    if movies is not None:
        at, i = side_table_positions(movies.ids, movie_ids)
        if i is not None:
            raise text.fail(i, f"movie {movie_ids[i]} is not in {inputs.movies}")
        topic = movies.topic_id[at]
    else:
        topic = np.zeros(users.size, dtype=np.int64)
        notes.append(f"{inputs.ratings}: no {release.movies_name} next to it: topic_id is 0 "
                     "(unknown) for every movie")
    log = to_uniti(users, movie_ids, rating, ts, topic)
    log.notes.extend(notes)
    return write_data_folder(log, out, overwrite=overwrite)


def to_uniti(users: np.ndarray, movie_ids: np.ndarray, rating: np.ndarray, ts_ms: np.ndarray,
             topic: np.ndarray) -> ImportedLog:
    """Rating columns -> UniTi: one explicit event and one example per rating."""
    n = users.size
    like = rating >= LIKE_AT_LEAST
    dislike = rating <= DISLIKE_AT_MOST
    action = np.where(like, 0, np.where(dislike, 1, 2)).astype(np.int8)
    zeros = np.zeros(n, dtype=np.int8)
    no_seconds = np.full(n, np.nan, dtype=np.float32)
    item = {"media_id": movie_ids, "author_id": np.full(n, UNKNOWN_AUTHOR, dtype=np.int64),
            "topic_id": topic,
            "media_type": zeros, "surface": zeros}
    events = {
        "user_id": users, "ts": ts_ms, "timeline": np.full(n, EXPLICIT, dtype=np.int8),
        **item, "action": action, "video_duration": no_seconds, "dwell_time": no_seconds,
    }
    examples = {
        "user_id": users, "request_ts": ts_ms, **item,
        label_column("like"): like, label_column("dislike"): dislike,
        label_column("rating"): rating.astype(np.float32),
    }
    vocab = {"media_type": ["movie"], "surface": ["catalog"], "action": list(ACTIONS)}
    return ImportedLog(source=SOURCE, vocab=vocab, events=events, examples=examples,
                       tasks=dict(TASKS), dense=[])
