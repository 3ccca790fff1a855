"""A bounded fuzz/soak probe of the ``dv365`` command line with hostile input.

Four categories, each a stream of cases drawn from one seed:

* ``specs``: fuzzed slice specs (mutations of the shipped specs, random token soup and
  crafted limits: deep nesting, long lists, huge literals, folders and overlong names as
  includes) through ``dv365 compile``;
* ``configs``: bad training configs (mutations of a small valid one: wrong types, limits,
  missing keys, an alias bomb, undecodable bytes, a folder) through ``dv365 train``;
* ``parquet``: malformed Parquet (bit flips, truncation, garbage, a damaged footer) of a
  small generated events dataset through ``dv365 validate``;
* ``plugins``: broken installed plugins (raising or exiting at import, in a hook or in
  ``dv365_add_commands``, misspelled hooks, duplicate names) around a failing
  ``dv365 compile``.

Every case runs ``dv365`` in a subprocess (spec cases may run in-process, ``--in-process``,
with an alarm as their timeout: compile keeps no state between runs) and is classified:

* ``clean``: exit 0, or exit 1/2 with an ``error:`` line and no traceback;
* ``internal``: an ``internal error:`` line (a bug, located nowhere);
* ``traceback``: a Python traceback reached the user;
* ``hang``: the case ran past ``--timeout`` (``--spec-timeout`` for specs, 60 s for configs
  and ``--train-timeout`` for the valid one, which trains);
* ``unclear``: any other exit (a signal, exit 1/2 without an error line);
* ``wrong``: silently wrong: a damaged Parquet file that validates although its values
  changed, or a failing command that a plugin turned into exit 0.

Prints a table of counts per category and writes them (with every non-clean case) as JSON to
``--out``. Usage::

    python scripts/probe_cli.py --cases 200 --seed 0 --out build/probe.json
    python scripts/probe_cli.py --categories specs --cases 2000 --in-process
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = ("specs", "configs", "parquet", "plugins")
OUTCOMES = ("clean", "internal", "traceback", "hang", "unclear", "wrong")
# Address space of one case: a runaway allocation fails inside the case, not the machine.
MEMORY_LIMIT_BYTES = 8 * 2**30
_MAIN = "import sys; from dv365.cli.app import main; sys.exit(main(sys.argv[1:]))"


@dataclass
class Result:
    category: str
    case: str
    outcome: str
    rc: int | None
    seconds: float
    tail: str = ""


@dataclass
class Tally:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[Result] = field(default_factory=list)

    def add(self, result: Result) -> None:
        row = self.counts.setdefault(result.category, {k: 0 for k in ("tried", *OUTCOMES)})
        row["tried"] += 1
        row[result.outcome] += 1
        if result.outcome != "clean":
            self.problems.append(result)


# ----------------------------------------------------------------------------- running
def classify(rc: int | None, output: str, *, wrong: bool = False) -> str:
    if rc is None:
        return "hang"
    if "Traceback (most recent call last)" in output:
        return "traceback"
    if "internal error:" in output:
        return "internal"
    if wrong:
        return "wrong"
    if rc == 0:
        return "clean"
    if rc in (1, 2) and "error:" in output.lower():  # Click spells usage errors "Error:"
        return "clean"
    return "unclear"


def _limit_memory() -> None:  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def run_dv365(args: list[str], timeout: float, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> tuple[int | None, str, float]:
    """``dv365 ARGS`` in a subprocess of this checkout: (exit code or None on timeout,
    stdout + stderr, seconds)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "DV365_DISABLE_PLUGIN_AUTOLOAD": "1",
                **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    start = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True,
                              timeout=timeout, env=full_env, cwd=cwd or ROOT,
                              preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") + (exc.stderr or b"")
        return None, out.decode("utf-8", "replace"), time.monotonic() - start
    out = done.stdout + done.stderr
    return done.returncode, out.decode("utf-8", "replace"), time.monotonic() - start


class _Alarm(BaseException):
    """Raised by SIGALRM; a BaseException so that the CLI's last line of defence (which
    catches Exception) does not turn it into an internal error."""


def run_in_process(args: list[str], timeout: float) -> tuple[int | None, str, float]:
    """``dv365 ARGS`` through ``main()`` in this process, output captured, ``timeout`` by
    SIGALRM (only for commands that keep no state between runs, such as compile)."""
    if str(ROOT) not in sys.path:  # this checkout's dv365, as the subprocesses get
        sys.path.insert(0, str(ROOT))
    from dv365.cli.app import main

    def alarm(signum, frame):
        raise _Alarm()

    buffer = io.StringIO()
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    start = time.monotonic()
    rc: int | None
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            try:
                rc = main(args)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 1
            except _Alarm:
                rc = None
            except Exception:  # noqa: BLE001 - what escapes main() is a traceback
                import traceback

                traceback.print_exc(file=buffer)
                rc = 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return rc, buffer.getvalue(), time.monotonic() - start


def _tail(text: str, n: int = 400) -> str:
    return text[-n:]


# ----------------------------------------------------------------------------- specs
_SPEC_TOKENS = [
    "slice", "table", "for", "in", "include", "gap", "dim", "from", "where", "pool", "into",
    "mean", "sum", "weighted", "by", "over", "all", "and", "or", "not", "rows", "hashing",
    "hash(7)", "modulo", "identity", ":", ",", "(", ")", "[", "]", "{", "}", "=", "==", "!=",
    "<", ">=", "..", "+", "-", "*", "/", "^", "0", "1", "1e308", "1e400", "9" * 40, "15s",
    "7d", "100000w", "0ms", "-3d", "dwell_time", "video_duration", "action", "like", "share",
    "media_id", "author_id", "explicit", "implicit", "media", "x", "{x}", "{window}", "ln",
    "exp", "sqrt", '"s"', '"\\u0000"', '"unterminated', "#", "\n", "\t", "\u00b2", "\u0663",
    "\ufeff", "\x00", "\udcff", "é", "2^40", "2^64",
]


def _spec_cases(rng: random.Random, workdir: Path) -> Iterator[tuple[str, bytes, str]]:
    """(case name, spec bytes, include name to create as a folder or '') forever."""
    bases = [(ROOT / "slices" / name).read_bytes()
             for name in ("minimal.slice", "reels.slice")]
    crafted: list[tuple[str, bytes, str]] = [
        ("over 9,999 windows", (b"table m: media_id, rows 10, dim 4\nslice s_{window}: from "
                                b"implicit pool media_id into m mean over " +
                                ", ".join(f"{i}m" for i in range(1, 10_000)).encode()), ""),
        ("for of 10^5 values", (b"table m: media_id, rows 10, dim 4\nfor x in [" +
                                ", ".join(map(str, range(100_000))).encode() +
                                b"] { slice s_{x}: from implicit pool media_id into m }"), ""),
        ("nested 10,000 deep", b"x = " + b"(" * 10_000 + b"1" + b")" * 10_000, ""),
        ("include a folder", b'include "sub"\n', "sub"),
        ("include an overlong name", b'include "' + b"a" * 300 + b'.slice"\n', ""),
        ("include itself", b'include "case.slice"\n', ""),
        ("invalid UTF-8", b"slice \xff\xfe: from implicit", ""),
        ("UTF-16", "slice a: from implicit".encode("utf-16"), ""),
        ("empty", b"", ""),
        ("2^34 rows", b"table m: media_id, rows 2^34, dim 64\n"
                      b"slice a: from implicit pool media_id into m", ""),
    ]
    yield from crafted
    n = 0
    while True:
        n += 1
        kind = rng.choice(("flip", "delete", "duplicate", "insert", "soup"))
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 6)):
            if kind == "flip" and data:
                i = rng.randrange(len(data))
                data[i] ^= 1 << rng.randrange(8)
            elif kind == "delete" and data:
                i = rng.randrange(len(data))
                del data[i:i + rng.randint(1, 40)]
            elif kind == "duplicate" and data:
                i = rng.randrange(len(data))
                data[i:i] = data[i:i + rng.randint(1, 200)] * rng.randint(1, 20)
            elif kind == "insert":
                i = rng.randrange(len(data) + 1)
                word = rng.choice(_SPEC_TOKENS)
                data[i:i] = (" " + word + " ").encode("utf-8", "surrogateescape")
        if kind == "soup":
            words = [rng.choice(_SPEC_TOKENS) for _ in range(rng.randint(1, 300))]
            data = bytearray(" ".join(words).encode("utf-8", "surrogateescape"))
        yield f"{kind} #{n}", bytes(data), ""


def probe_specs(rng: random.Random, cases: int, timeout: float, workdir: Path,
                in_process: bool) -> Iterator[Result]:
    runner: Callable = run_in_process if in_process else run_dv365
    for i, (name, data, folder) in zip(range(cases), _spec_cases(rng, workdir)):
        case_dir = workdir / f"spec-{i}"
        case_dir.mkdir()
        spec = case_dir / "case.slice"
        spec.write_bytes(data)
        if folder:
            (case_dir / folder).mkdir()
        rc, out, seconds = runner(["compile", str(spec), "-o", str(case_dir / "build")],
                                  timeout)
        yield Result("specs", name, classify(rc, out), rc, round(seconds, 3), _tail(out))
        shutil.rmtree(case_dir, ignore_errors=True)


# ----------------------------------------------------------------------------- data
def _synth(workdir: Path, timeout: float) -> Path:
    data = workdir / "data"
    rc, out, _ = run_dv365(["synth", str(data), "--users", "300", "--seed", "0"],
                           max(timeout, 300))
    if rc != 0:
        raise SystemExit(f"probe: dv365 synth failed:\n{out}")
    return data


# ----------------------------------------------------------------------------- configs
def _base_config(data: Path, run: Path) -> dict:
    return {"data": {"path": str(data), "cache_dir": str(run.parent / "cache")},
            "spec": str(ROOT / "slices" / "minimal.slice"), "out": str(run),
            "encoder": {"type": "fsa"},
            "backbone": {"type": "dlrm", "embedding_dim": 4, "dense_layers": [8],
                         "over_layers": [16]},
            "batch_size": 32, "steps": 4, "eval_every": 2, "checkpoint_every": 2}


_BAD_VALUES = [-1, 0, 2**70, -(2**70), 1e300, float("inf"), float("nan"), "", "x", [], {},
               None, True, [1, "a"], {"type": "nosuch"}, "¹²³", "/", "../../../../etc"]
_KEYS = ["seed", "steps", "eval_every", "checkpoint_every", "batch_size", "spec", "out",
         "tasks", "encoder", "backbone", "optimizer", "item_features", "device", "kernel",
         "data", "data.path", "data.cache_dir", "data.validation_days", "data.gap_hours",
         "encoder.dropout", "encoder.type", "backbone.embedding_dim", "backbone.dense_layers",
         "optimizer.sparse.lr", "optimizer.dense.lr", "table_init_std", "epochs"]


def _set(config: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[last] = value


def _config_cases(rng: random.Random, data: Path, workdir: Path
                  ) -> Iterator[tuple[str, Callable[[Path], Path]]]:
    import yaml

    def yaml_case(mutate: Callable[[dict, Path], None]) -> Callable[[Path], Path]:
        def write(case_dir: Path) -> Path:
            config = _base_config(data, case_dir / "run")
            mutate(config, case_dir)
            path = case_dir / "train.yaml"
            path.write_text(yaml.safe_dump(config, allow_unicode=True))
            return path
        return write

    def raw_case(body: bytes) -> Callable[[Path], Path]:
        def write(case_dir: Path) -> Path:
            path = case_dir / "train.yaml"
            path.write_bytes(body)
            return path
        return write

    def folder_case(case_dir: Path) -> Path:
        (case_dir / "train.yaml").mkdir()
        return case_dir / "train.yaml"

    bomb = "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] +
                     [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
                     + ["spec: *a8"])
    crafted = [
        ("valid", yaml_case(lambda c, d: None)),
        ("alias bomb", raw_case(bomb.encode())),
        ("not UTF-8", raw_case(b"steps: \xff\xfe\n")),
        ("UTF-16", raw_case("steps: 4\n".encode("utf-16"))),
        ("a folder", folder_case),
        ("duplicate keys", raw_case(b"steps: 4\nsteps: 5\n")),
        ("out is a file", yaml_case(lambda c, d: (d / "f").write_text("") or
                                    c.update(out=str(d / "f")))),
        ("spec is a folder", yaml_case(lambda c, d: c.update(spec=str(d)))),
        ("tasks empty", yaml_case(lambda c, d: c.update(tasks=[]))),
        ("lr inf", yaml_case(lambda c, d: _set(c, "optimizer.sparse.lr", float("inf")))),
    ]
    yield from crafted
    n = 0
    while True:
        n += 1
        changes = [(rng.choice(_KEYS), rng.choice(_BAD_VALUES))
                   for _ in range(rng.randint(1, 2))]
        drop = rng.random() < 0.2

        def mutate(config: dict, case_dir: Path, changes=changes, drop=drop) -> None:
            for key, value in changes:
                _set(config, key, value)
            if drop:
                config.pop(rng.choice(list(config)), None)

        label = ", ".join(f"{k}={v!r}"[:40] for k, v in changes) + (" -key" if drop else "")
        yield f"#{n} {label}", yaml_case(mutate)


def probe_configs(rng: random.Random, cases: int, timeout: float, workdir: Path,
                  data: Path) -> Iterator[Result]:
    for i, (name, write) in zip(range(cases), _config_cases(rng, data, workdir)):
        case_dir = workdir / f"config-{i}"
        case_dir.mkdir()
        config = write(case_dir)
        # Only a config that validates trains; every other case must fail long before.
        rc, out, seconds = run_dv365(["train", str(config)], timeout if name == "valid" else
                                     min(timeout, 60.0))
        yield Result("configs", name, classify(rc, out), rc, round(seconds, 3), _tail(out))
        shutil.rmtree(case_dir, ignore_errors=True)


# ----------------------------------------------------------------------------- parquet
def _parquet_mutation(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    kind = rng.choice(("bit", "bit", "bit", "bytes", "truncate", "footer", "garbage", "empty"))
    body = bytearray(data)
    if kind == "bit":
        i = rng.randrange(4, len(body) - 8)
        body[i] ^= 1 << rng.randrange(8)
        return f"bit flip at {i}", bytes(body)
    if kind == "bytes":
        i = rng.randrange(4, len(body) - 8)
        body[i:i + 16] = bytes(rng.randrange(256) for _ in range(16))
        return f"16 random bytes at {i}", bytes(body)
    if kind == "truncate":
        cut = rng.randrange(len(body))
        return f"truncated to {cut}", bytes(body[:cut])
    if kind == "footer":
        i = len(body) - 8 - rng.randrange(64)
        body[i] ^= 0xFF
        return f"footer byte {i}", bytes(body)
    if kind == "garbage":
        return "garbage", bytes(rng.randrange(256) for _ in range(rng.randint(1, 4096)))
    return "empty", b""


def _same_values(original: Path, damaged: Path) -> bool | None:
    """Whether the damaged file still reads as the original's values (None: unreadable)."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(damaged).equals(pq.read_table(original))
    except Exception:  # noqa: BLE001 - any failure to read is "unreadable"
        return None


def probe_parquet(rng: random.Random, cases: int, timeout: float, workdir: Path,
                  data: Path) -> Iterator[Result]:
    files = sorted((data / "events").rglob("*.parquet"))
    for i in range(cases):
        case_data = workdir / f"parquet-{i}"
        shutil.copytree(data, case_data, ignore=shutil.ignore_patterns("examples", "truth"))
        victim_rel = rng.choice(files).relative_to(data)
        victim = case_data / victim_rel
        name, body = _parquet_mutation(rng, victim.read_bytes())
        victim.write_bytes(body)
        rc, out, seconds = run_dv365(["validate", str(case_data)], timeout)
        same = _same_values(data / victim_rel, victim)
        wrong = rc == 0 and same is False  # values changed and validation passed
        yield Result("parquet", f"{victim_rel}: {name}", classify(rc, out, wrong=wrong), rc,
                     round(seconds, 3), _tail(out))
        shutil.rmtree(case_data, ignore_errors=True)


# ----------------------------------------------------------------------------- plugins
_PLUGIN_BODIES = {
    "raises at import": "raise RuntimeError('broken at import')",
    "exits 0 at import": "raise SystemExit(0)",
    "exits 3 at import": "import sys\nsys.exit(3)",
    "imports a missing module": "import dv365_no_such_module",
    "misspelled hook": "import dv365\n@dv365.hookimpl\ndef dv365_register_encoder(register):\n"
                       "    pass",
    "raising registration": "import dv365\n@dv365.hookimpl\ndef dv365_register_encoders("
                            "register):\n    raise ValueError('no')",
    "exiting registration": "import dv365\n@dv365.hookimpl\ndef dv365_register_metrics("
                            "register):\n    raise SystemExit(0)",
    "duplicate encoder": "import dv365\n@dv365.hookimpl\ndef dv365_register_encoders("
                         "register):\n    register('fsa', lambda *a, **k: None)",
    "non-callable factory": "import dv365\n@dv365.hookimpl\ndef dv365_register_codecs("
                            "register):\n    register('c', 42)",
    "raising add_commands": "import dv365\n@dv365.hookimpl\ndef dv365_add_commands(cli):\n"
                            "    raise KeyError('cli')",
    "exiting add_commands": "import dv365\n@dv365.hookimpl\ndef dv365_add_commands(cli):\n"
                            "    raise SystemExit(0)",
    "command shadowing compile": "import click, dv365\n@click.command('compile')\ndef c():\n"
                                 "    pass\n@dv365.hookimpl\ndef dv365_add_commands(cli):\n"
                                 "    cli.add_command(c)",
    "hook with an unknown argument": "import dv365\n@dv365.hookimpl\ndef dv365_add_commands("
                                     "cli, nosuch):\n    pass",
}


def _install_fake_plugin(site: Path, body: str) -> None:
    """A distribution ``dv365-probe`` with one ``dv365`` entry point, found on ``site``."""
    (site / "dv365_probe_plugin.py").write_text(body + "\n")
    info = site / "dv365_probe-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dv365-probe\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[dv365]\nprobe = dv365_probe_plugin\n")


def probe_plugins(rng: random.Random, cases: int, timeout: float, workdir: Path
                  ) -> Iterator[Result]:
    names = list(_PLUGIN_BODIES)
    for i in range(cases):
        name = names[i % len(names)] if i < len(names) else rng.choice(names)
        site = workdir / f"plugin-{i}"
        site.mkdir()
        _install_fake_plugin(site, _PLUGIN_BODIES[name])
        env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{site}", "DV365_DISABLE_PLUGIN_AUTOLOAD": None}
        # A command that must fail: a plugin may not turn it into exit 0.
        rc, out, seconds = run_dv365(["compile", str(site / "missing.slice")], timeout, env)
        yield Result("plugins", name, classify(rc, out, wrong=rc == 0), rc,
                     round(seconds, 3), _tail(out))
        shutil.rmtree(site, ignore_errors=True)


# ----------------------------------------------------------------------------- main
def table(tally: Tally) -> str:
    header = ["category", "tried", *OUTCOMES]
    rows = [[c, *(str(tally.counts[c][k]) for k in header[1:])] for c in tally.counts]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join
    return "\n".join([line(h.ljust(w) for h, w in zip(header, widths)),
                      *(line(v.rjust(w) if j else v.ljust(w) for j, (v, w) in
                             enumerate(zip(r, widths))) for r in rows)])


def _cases(text: str, chosen: list[str], parser: argparse.ArgumentParser) -> dict[str, int]:
    try:
        if "=" not in text:
            return {c: int(text) for c in chosen}
        given = {k.strip(): int(v) for k, v in (p.split("=", 1) for p in text.split(","))}
    except ValueError:
        parser.error(f"--cases: cannot read {text!r}")
    if set(given) - set(chosen):
        parser.error(f"--cases names categories not chosen: {sorted(set(given) - set(chosen))}")
    return {c: given.get(c, 0) for c in chosen}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="50",
                        help="Cases per category: N, or per category as specs=300,configs=20.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds per case.")
    parser.add_argument("--spec-timeout", type=float, default=5.0,
                        help="Seconds per spec case (reels.slice compiles in a fraction of one).")
    parser.add_argument("--train-timeout", type=float, default=180.0,
                        help="Seconds per config case (a valid config trains: JIT, 4 steps).")
    parser.add_argument("--categories", default=",".join(CATEGORIES))
    parser.add_argument("--in-process", action="store_true",
                        help="Run spec cases through main() in this process (faster).")
    parser.add_argument("--out", type=Path, help="Write the counts and problems as JSON.")
    args = parser.parse_args(argv)
    chosen = [c.strip() for c in args.categories.split(",") if c.strip()]
    unknown = set(chosen) - set(CATEGORIES)
    if unknown:
        parser.error(f"unknown categories {sorted(unknown)}; choose from {CATEGORIES}")

    cases = _cases(args.cases, chosen, parser)
    tally = Tally()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dv365-probe-") as tmp:
        workdir = Path(tmp)
        data = _synth(workdir, args.timeout) if {"configs", "parquet"} & set(chosen) else None
        for category in chosen:
            rng = random.Random(f"{args.seed}-{category}")
            streams = {
                "specs": lambda n: probe_specs(rng, n, args.spec_timeout, workdir,
                                               args.in_process),
                "configs": lambda n: probe_configs(rng, n, args.train_timeout, workdir, data),
                "parquet": lambda n: probe_parquet(rng, n, args.timeout, workdir, data),
                "plugins": lambda n: probe_plugins(rng, n, args.timeout, workdir),
            }
            for result in streams[category](cases[category]):
                tally.add(result)
                if result.outcome != "clean":
                    print(f"{category}: {result.outcome}: {result.case}: "
                          f"{result.tail.strip().splitlines()[-1:] or ''}", file=sys.stderr)
    print(table(tally))
    report = {"seed": args.seed, "cases": cases, "timeout_s": args.timeout,
              "spec_timeout_s": args.spec_timeout,
              "seconds": round(time.monotonic() - started, 1), "counts": tally.counts,
              "problems": [asdict(p) for p in tally.problems]}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"seed": args.seed, "seconds": report["seconds"],
                      "counts": tally.counts}))
    return 0 if not tally.problems else 1


if __name__ == "__main__":
    sys.exit(main())
