"""`dv365 import movielens`: the three GroupLens layouts become UniTi events and examples."""

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dv365.cli import app as cli_app
from dv365.data.importers.imported_log import UNKNOWN_AUTHOR
from dv365.data.importers.movielens import GENRES, genre_topic_ids, import_movielens
from dv365.data.schema import DatasetMeta
from dv365.data.validate import validate_dataset
from dv365.errors import DataError, NotFoundError

# (user, movie, rating, unix seconds), deliberately out of time order within users.
RATINGS = [
    (1, 10, 4.0, 964982703), (1, 20, 2.0, 964981247), (1, 30, 3.0, 964982224),
    (2, 20, 5.0, 1445714835), (2, 10, 1.0, 1445714000), (2, 40, 3.0, 1445715000),
    (3, 30, 4.0, 1100000000),
]
HALF_STARS = [(7, 10, 4.5, 1300000000), (7, 20, 2.5, 1300000500), (7, 30, 0.5, 1300000100)]
# movie -> (title, genres). Topics, the rarest genre in this catalogue: Children's and Comedy
# have two movies, the others one; 10's rarest tie (Adventure 2, Animation 3, Fantasy 9) goes
# to the lowest number; no genres is 0.
MOVIES = {10: ("Toy Story (1995)", "Adventure|Animation|Children|Comedy|Fantasy"),
          20: ("Grumpier Old Men, The (1995)", "Comedy|Romance"),
          30: ("Babe (1995)", "Children|Drama"),
          40: ("Some Film (2020)", "(no genres listed)")}
TOPICS = {10: 2, 20: 14, 30: 8, 40: 0}


def _write_csv_release(folder: Path, ratings=RATINGS, movies=True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userId,movieId,rating,timestamp"]
    lines += [f"{u},{m},{r:.1f},{t}" for u, m, r, t in ratings]
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    if movies:
        rows = ["movieId,title,genres"]
        for m, (title, genres) in MOVIES.items():
            rows.append(f'{m},"{title}",{genres}' if "," in title else f"{m},{title},{genres}")
        (folder / "movies.csv").write_text("\n".join(rows) + "\n")
    return folder


def _write_dat_release(folder: Path, ratings=RATINGS, movies=True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{u}::{m}::{int(r) if r == int(r) else r}::{t}" for u, m, r, t in ratings]
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n")
    if movies:
        rows = [f"{m}::{title}::{genres.replace('Children', 'Children' + chr(39) + 's')}"
                for m, (title, genres) in MOVIES.items()]
        (folder / "movies.dat").write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    return folder


def _u_item_line(movie: int, title: str, genres: str) -> str:
    flags = ["0"] * 19
    names = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
             "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
             "Romance", "Sci-Fi", "Thriller", "War", "Western"]
    for g in genres.split("|"):
        g = "Children's" if g == "Children" else g
        if g in names:
            flags[names.index(g)] = "1"
    return "|".join([str(movie), title, "01-Jan-1995", "", "http://us.imdb.com/x"] + flags)


def _write_u_data_release(folder: Path, ratings=RATINGS, movies=True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{u}\t{m}\t{int(r)}\t{t}" for u, m, r, t in ratings]
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    if movies:
        rows = [_u_item_line(m, title, genres) for m, (title, genres) in MOVIES.items()]
        (folder / "u.item").write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    return folder


WRITERS = {"ratings.csv": _write_csv_release, "ratings.dat": _write_dat_release,
           "u.data": _write_u_data_release}


def _action(rating: float) -> str:
    return "like" if rating >= 4 else "dislike" if rating <= 2 else "rate"


@pytest.mark.parametrize("layout", list(WRITERS))
def test_each_rating_is_an_explicit_event_and_an_example(tmp_path, layout):
    src = WRITERS[layout](tmp_path / "ml")
    summary = import_movielens(src, tmp_path / "data")
    events = pq.read_table(tmp_path / "data" / "events").to_pylist()
    examples = pq.read_table(tmp_path / "data" / "examples").to_pylist()

    want = sorted(RATINGS, key=lambda r: (r[0], r[3]))
    assert [(e["user_id"], e["media_id"], int(e["ts"].timestamp()), e["action"])
            for e in events] == [(u, m, t, _action(r)) for u, m, r, t in want]
    assert all(e["timeline"] == "explicit" and e["media_type"] == "movie"
               and e["surface"] == "catalog" and e["author_id"] == UNKNOWN_AUTHOR
               and e["dwell_time"] is None and e["video_duration"] is None for e in events)
    assert [e["topic_id"] for e in events] == [TOPICS[m] for _, m, _, _ in want]

    assert [(x["user_id"], x["media_id"], int(x["request_ts"].timestamp()), x["label_like"],
             x["label_dislike"], x["label_rating"]) for x in examples] == [
        (u, m, t, int(r >= 4), int(r <= 2), r) for u, m, r, t in want]
    assert summary.users == 3 and summary.events == summary.examples == len(RATINGS)
    assert summary.explicit_events == len(RATINGS)
    for kind in ("events", "examples"):
        assert validate_dataset(tmp_path / "data" / kind, kind)[1].ok


def test_meta_declares_vocab_tasks_and_source(tmp_path):
    import_movielens(_write_csv_release(tmp_path / "ml"), tmp_path / "data")
    events = DatasetMeta.from_schema(pq.read_schema(next((tmp_path / "data" / "events").glob("*"))))
    examples = DatasetMeta.from_schema(
        pq.read_schema(next((tmp_path / "data" / "examples").glob("*"))))
    assert events.source == examples.source == "movielens"
    assert events.vocab == {"media_type": ["movie"], "surface": ["catalog"],
                            "action": ["like", "dislike", "rate"]}
    assert examples.tasks == {"like": "binary", "dislike": "binary", "rating": "regression"}
    assert examples.dense == []


def test_unused_actions_are_not_declared(tmp_path):
    only_likes = [r for r in RATINGS if r[2] >= 4]
    import_movielens(_write_csv_release(tmp_path / "ml", ratings=only_likes), tmp_path / "data")
    meta = DatasetMeta.from_schema(pq.read_schema(next((tmp_path / "data" / "events").glob("*"))))
    assert meta.vocab["action"] == ["like"]


def test_half_stars_of_the_10m_layout(tmp_path):
    src = _write_dat_release(tmp_path / "ml", ratings=HALF_STARS)
    import_movielens(src, tmp_path / "data")
    events = pq.read_table(tmp_path / "data" / "events")
    assert events["action"].to_pylist() == ["like", "dislike", "rate"]  # 4.5, 0.5, 2.5 by time
    examples = pq.read_table(tmp_path / "data" / "examples")
    assert examples["label_rating"].to_pylist() == [4.5, 0.5, 2.5]


def test_without_a_movies_file_topics_are_unknown_and_a_note_says_so(tmp_path):
    src = _write_u_data_release(tmp_path / "ml", movies=False)
    summary = import_movielens(src, tmp_path / "data")
    assert set(pq.read_table(tmp_path / "data" / "events")["topic_id"].to_pylist()) == {0}
    assert summary.notes == (f"{src / 'u.data'}: no u.item next to it: topic_id is 0 (unknown) "
                             "for every movie",)


def test_genre_numbering():
    genres = pa.array(["Comedy", "Children", "IMAX", "(no genres listed)", None, "Zombie",
                       "Anime", "Action", "Western"])
    assert genre_topic_ids(genres).tolist() == [5, 4, 19, 0, 0, 101, 100, 1, 18]


def _topics(catalogue: dict[str, str]) -> dict[str, str]:
    numbers = genre_topic_ids(pa.array(list(catalogue.values())))
    return {movie: GENRES[n] for movie, n in zip(catalogue, numbers)}


def test_topic_is_the_rarest_genre_not_the_first_spelled():
    # Alphabetical first genre would make every movie but two Action.
    catalogue = {
        "thriller": "Thriller", "action thriller": "Action|Thriller",
        "imax thriller": "Action|IMAX|Thriller", "action comedy": "Action|Comedy",
        "action drama": "Action|Drama", "imax action": "Action|IMAX", "action": "Action",
        "untagged": "(no genres listed)",
    }
    # Action: 6 movies, Thriller: 3, IMAX: 2 (a format: only for movies without a subject).
    assert _topics(catalogue) == {
        "thriller": "Thriller", "action thriller": "Thriller", "imax thriller": "Thriller",
        "action comedy": "Comedy", "action drama": "Drama", "imax action": "Action",
        "action": "Action", "untagged": "unknown",
    }
    spelled_backwards = {m: "|".join(reversed(g.split("|"))) for m, g in catalogue.items()}
    assert _topics(spelled_backwards) == _topics(catalogue)
    # In a catalogue with more thrillers than action films the same pair maps to Action.
    thrillers = {f"thriller {i}": "Thriller" for i in range(3)}
    assert _topics({**thrillers, "action thriller": "Action|Thriller"})["action thriller"] == (
        "Action")


def test_equally_rare_genres_go_to_the_lower_number_and_repeats_count_once():
    assert _topics({"a": "Drama|Comedy", "b": "Crime|Crime|Drama", "c": "Crime|Comedy"}) == {
        "a": "Comedy", "b": "Crime", "c": "Comedy"}


def test_u_item_flags_map_by_the_same_rule(tmp_path):
    folder = tmp_path / "ml"
    _write_u_data_release(folder)
    rows = [_u_item_line(10, "A (1995)", "Action|Thriller"),
            _u_item_line(20, "B (1995)", "Action|Comedy"),
            _u_item_line(30, "C (1995)", "Action"),
            _u_item_line(40, "D (1995)", "")]
    (folder / "u.item").write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    import_movielens(folder, tmp_path / "data")
    events = pq.read_table(tmp_path / "data" / "events").to_pylist()
    topics = {e["media_id"]: GENRES[e["topic_id"]] for e in events}
    assert topics == {10: "Thriller", 20: "Comedy", 30: "Action", 40: "unknown"}


def test_ratings_file_may_be_given_directly_and_in_a_release_subfolder(tmp_path):
    _write_csv_release(tmp_path / "downloads" / "ml-latest-small")
    import_movielens(tmp_path / "downloads", tmp_path / "a")
    import_movielens(tmp_path / "downloads" / "ml-latest-small" / "ratings.csv", tmp_path / "b")
    a = pq.read_table(tmp_path / "a" / "events")
    assert a.equals(pq.read_table(tmp_path / "b" / "events"))
    assert set(a["topic_id"].to_pylist()) == set(TOPICS.values())


# --- bad input --------------------------------------------------------------------------------

def _expect_error(src, out, *fragments):
    with pytest.raises(DataError) as err:
        import_movielens(src, out)
    text = err.value.render()
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in text, text
    assert not out.exists()


@pytest.mark.parametrize("layout,bad_line,fragment", [
    ("ratings.csv", "5,10,x,964982703", "'rating'"),
    ("ratings.csv", "5,10,4.0", "expected 4 fields, found 3"),
    ("ratings.dat", "5::10::4::96x4982703", "'timestamp'"),
    ("ratings.dat", "5::10::4", "expected 4 fields, found 3"),
    ("u.data", "5\t10\t7\t964982703", "rating 7 is outside 0.5..5"),
    ("u.data", "5\t\t4\t964982703", "empty value in column 'movieId'"),
])
def test_bad_line_is_named_by_file_and_line(tmp_path, layout, bad_line, fragment):
    src = WRITERS[layout](tmp_path / "ml")
    path = src / layout
    lines = path.read_text().splitlines()
    lines.insert(3, bad_line)
    path.write_text("\n".join(lines) + "\n")
    _expect_error(src, tmp_path / "data", f"{path}:4", fragment)


def test_blank_lines_are_skipped_and_lines_still_counted(tmp_path):
    src = _write_u_data_release(tmp_path / "ml")
    path = src / "u.data"
    lines = path.read_text().splitlines()
    lines[2:2] = ["", ""]
    lines.insert(6, "9\t10\t9\t964982703")
    path.write_text("\n".join(lines) + "\n")
    _expect_error(src, tmp_path / "data", f"{path}:7", "rating 9")
    del lines[6]
    path.write_text("\n".join(lines) + "\n")
    assert import_movielens(src, tmp_path / "data").events == len(RATINGS)


def test_movie_missing_from_movies_file(tmp_path):
    src = _write_csv_release(tmp_path / "ml", ratings=RATINGS + [(4, 99, 4.0, 964982703)])
    _expect_error(src, tmp_path / "data", f"{src / 'ratings.csv'}:9", "movie 99 is not in")


def test_missing_header_column(tmp_path):
    src = _write_csv_release(tmp_path / "ml")
    path = src / "ratings.csv"
    path.write_text(path.read_text().replace("timestamp", "time", 1))
    _expect_error(src, tmp_path / "data", f"{path}:1", "missing column 'timestamp'")


def test_every_missing_header_column_in_one_error(tmp_path):
    src = _write_csv_release(tmp_path / "ml")
    path = src / "ratings.csv"
    path.write_text(path.read_text().replace("userId,movieId,rating,timestamp",
                                             "user_id,item,rating,ts", 1))
    _expect_error(src, tmp_path / "data", f"{path}:1: error: missing columns 'userId' (did "
                  "you mean 'user_id'?), 'movieId', 'timestamp'; found: user_id, item, rating, ts")


def test_timestamp_in_milliseconds_is_refused(tmp_path):
    src = _write_csv_release(tmp_path / "ml", ratings=[(1, 10, 4.0, 964982703000)])
    _expect_error(src, tmp_path / "data", f"{src / 'ratings.csv'}:2", "in seconds")


def test_no_ratings_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no MovieLens ratings file"):
        import_movielens(tmp_path / "empty", tmp_path / "data")


def test_two_releases_are_ambiguous(tmp_path):
    _write_csv_release(tmp_path / "src" / "ml-a")
    _write_dat_release(tmp_path / "src" / "ml-b")
    _expect_error(tmp_path / "src", tmp_path / "data", "several ratings files")


def test_cli(tmp_path, capsys):
    src = _write_dat_release(tmp_path / "ml")
    out = tmp_path / "data"
    assert cli_app.main(["import", "movielens", str(src), str(out)]) == 0
    assert "7 events" in capsys.readouterr().out
    path = src / "ratings.dat"
    path.write_text(path.read_text() + "1::2\n")
    assert cli_app.main(["import", "movielens", "--force", str(src), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}:8" in err
    assert pq.read_table(out / "events").num_rows == len(RATINGS)  # the old output survives


def test_a_large_file_imports_exactly(tmp_path):
    # 200k ratings in the 1M layout: several pyarrow blocks, read by several threads.
    rng = np.random.default_rng(0)
    n = 200_000
    users = rng.integers(1, 5000, n)
    movies = rng.integers(1, 4000, n)
    stars = rng.integers(1, 6, n)
    ts = rng.integers(956703932, 1046454590, n)
    text = "\n".join(f"{u}::{m}::{r}::{t}" for u, m, r, t in zip(users, movies, stars, ts))
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "ratings.dat").write_text(text + "\n")
    summary = import_movielens(tmp_path / "ml", tmp_path / "data")
    assert summary.events == n
    likes = pq.read_table(tmp_path / "data" / "examples", columns=["label_like"])
    assert int(np.sum(likes["label_like"].to_numpy())) == int(np.sum(stars >= 4))


# --- ordinary variants of the format ---------------------------------------------------------

def _events(out: Path) -> list:
    return pq.read_table(out / "events").to_pylist()


@pytest.mark.parametrize("layout,delimiter", [
    ("ratings.csv", "\t"), ("ratings.csv", ";"), ("ratings.csv", "|"), ("u.data", ","),
    ("ratings.dat", "\t"),
])
def test_other_delimiters_are_sniffed(tmp_path, layout, delimiter):
    src = WRITERS[layout](tmp_path / "ml")
    import_movielens(src, tmp_path / "plain")
    native = {"ratings.csv": ",", "u.data": "\t", "ratings.dat": "::"}[layout]
    path = src / layout
    path.write_text(path.read_text().replace(native, delimiter))
    if layout == "ratings.csv":  # the movies file in the same layout, titles quoted as needed
        movies = src / "movies.csv"
        with movies.open(newline="") as f:
            rows = list(csv.reader(f))
        with movies.open("w", newline="") as f:
            csv.writer(f, delimiter="\t", lineterminator="\r\n").writerows(rows)
    import_movielens(src, tmp_path / "data")
    assert _events(tmp_path / "data") == _events(tmp_path / "plain")


def test_the_ratings_delimiter_can_be_forced(tmp_path):
    src = _write_csv_release(tmp_path / "ml")
    import_movielens(src, tmp_path / "plain")
    path = src / "ratings.csv"
    path.write_text(path.read_text().replace(",", ";"))
    import_movielens(src, tmp_path / "data", delimiter=";")
    assert _events(tmp_path / "data") == _events(tmp_path / "plain")
    with pytest.raises(DataError) as err:
        import_movielens(src, tmp_path / "wrong", delimiter=",")
    assert f"{path}:1: error: missing columns 'userId', " in err.value.render()
    assert "found: userId;movieId;rating;timestamp (the header is one field" in err.value.render()
    assert "check the delimiter, or force one with --delimiter)" in err.value.render()


@pytest.mark.parametrize("layout", list(WRITERS))
def test_byte_order_marks_and_crlf_line_ends_change_nothing(tmp_path, layout):
    # Excel's "CSV UTF-8" writes both; the movies files are read as Latin-1, where pyarrow
    # would keep the mark as part of the first column's name.
    src = WRITERS[layout](tmp_path / "ml")
    import_movielens(src, tmp_path / "plain")
    for path in src.iterdir():
        text = path.read_bytes().replace(b"\n", b"\r\n")
        path.write_bytes(b"\xef\xbb\xbf" + text)
    import_movielens(src, tmp_path / "data")
    assert _events(tmp_path / "data") == _events(tmp_path / "plain")
