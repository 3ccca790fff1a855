"""Side-by-side statistics of the generator against the real KuaiRand-Pure sample.

``python -m dv365.data.calibration [--kuairand DIR] [--data SYNTH_DIR] [--users N]`` prints a
Markdown table (the one in docs/data.md): video durations, dwell times, watch ratios, action
rates per impression and the surface mix, real next to generated. Without ``--data`` it
generates a small data set in a temporary folder first. The KuaiRand sample is read straight
from its Parquet files (native schema), independent of the importer.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dv365.data.folder import dataset_files
from dv365.data.metadata import open_parquet
from dv365.errors import NotFoundError

DEFAULT_KUAIRAND = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / \
    "kuairand-pure-sample"
PERCENTILES = (5, 25, 50, 75, 95)
# KuaiRand flag -> our action/label name (is_forward is a share, is_hate a hide).
KUAIRAND_ACTIONS = {"like": "is_like", "comment": "is_comment", "share": "is_forward",
                    "follow": "is_follow", "profile_visit": "is_profile_enter",
                    "hide": "is_hate"}


@dataclass
class Stats:
    """Marginal statistics of one data source (impressions)."""

    name: str
    impressions: int
    duration_pct: np.ndarray
    dwell_pct: np.ndarray
    ratio_pct: np.ndarray
    complete_rate: float  # watch ratio >= 1 (videos)
    short_rate: float  # dwell < 3 s
    action_rates: dict[str, float]
    surface_shares: list[tuple[str, float]]


def kuairand_stats(folder: Path) -> Stats:
    """Statistics of the KuaiRand-Pure log sample (every row an impression of a video)."""
    files = sorted(Path(folder).glob("log_*.parquet"))
    if not files:
        raise NotFoundError(f"no KuaiRand log files (log_*.parquet) in {folder}",
                            where=str(folder),
                            hint="the sample lives in ../shared/data/kuairand-pure-sample")
    cols = ["duration_ms", "play_time_ms", "tab", *KUAIRAND_ACTIONS.values()]
    t = pa.concat_tables(open_parquet(f).read(columns=cols) for f in files)
    dur = t["duration_ms"].to_numpy().astype(np.float64) / 1000
    dwell = t["play_time_ms"].to_numpy().astype(np.float64) / 1000
    ok = dur > 0
    ratio = dwell[ok] / dur[ok]
    tab = t["tab"].to_numpy()
    counts = np.bincount(tab)
    shares = sorted(((f"tab {i}", c / len(tab)) for i, c in enumerate(counts) if c),
                    key=lambda x: -x[1])
    return Stats(
        name="KuaiRand-Pure sample", impressions=t.num_rows,
        duration_pct=np.percentile(dur, PERCENTILES),
        dwell_pct=np.percentile(dwell, PERCENTILES),
        ratio_pct=np.percentile(ratio, PERCENTILES),
        complete_rate=float((ratio >= 1).mean()),
        short_rate=float((dwell < 3).mean()),
        action_rates={k: float(pc.mean(t[c]).as_py()) for k, c in KUAIRAND_ACTIONS.items()},
        surface_shares=shares,
    )


def synth_stats(folder: Path) -> Stats:
    """Statistics of a generated data set's examples (the impressions it labels)."""
    t = pa.concat_tables(open_parquet(f).read() for f in
                         dataset_files(Path(folder) / "examples"))
    media = t["media_type"].to_numpy(zero_copy_only=False)
    video = media == "video"
    dwell = t["label_watch_time"].to_numpy().astype(np.float64)
    items = open_parquet(Path(folder) / "truth" / "items.parquet").read(
        columns=["video_duration"])["video_duration"]
    dur_all = items.to_numpy(zero_copy_only=False)
    media_id = t["media_id"].to_numpy()
    dur = dur_all[media_id][video]
    ratio = dwell[video] / dur
    surface = t["surface"].to_numpy(zero_copy_only=False)
    values, counts = np.unique(surface, return_counts=True)
    shares = sorted(zip(values.tolist(), (counts / len(surface)).tolist()), key=lambda x: -x[1])
    rates = {k: float(pc.mean(t[f"label_{k}"]).as_py()) for k in KUAIRAND_ACTIONS
             if f"label_{k}" in t.column_names}
    return Stats(
        name="dv365 synth (examples)", impressions=t.num_rows,
        duration_pct=np.percentile(dur, PERCENTILES),
        dwell_pct=np.percentile(dwell[video], PERCENTILES),
        ratio_pct=np.percentile(ratio, PERCENTILES),
        complete_rate=float((ratio >= 1).mean()),
        short_rate=float((dwell[video] < 3).mean()),
        action_rates=rates,
        surface_shares=shares,
    )


def _pct(values: np.ndarray, fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def markdown(real: Stats, synth: Stats) -> str:
    """The side-by-side table."""
    p = "/".join(f"p{q}" for q in PERCENTILES)
    rows = [
        ("impressions", f"{real.impressions:,}", f"{synth.impressions:,}"),
        (f"video duration, s ({p})", _pct(real.duration_pct, ".1f"),
         _pct(synth.duration_pct, ".1f")),
        (f"dwell on videos, s ({p})", _pct(real.dwell_pct, ".1f"), _pct(synth.dwell_pct, ".1f")),
        (f"watch ratio ({p})", _pct(real.ratio_pct, ".3f"), _pct(synth.ratio_pct, ".3f")),
        ("watch ratio >= 1 (complete)", f"{real.complete_rate:.3f}", f"{synth.complete_rate:.3f}"),
        ("dwell < 3 s (skip)", f"{real.short_rate:.3f}", f"{synth.short_rate:.3f}"),
    ]
    for k in KUAIRAND_ACTIONS:
        theirs = synth.action_rates.get(k)
        rows.append((f"{k} per impression", f"{real.action_rates[k]:.4f}",
                     "(not a task)" if theirs is None else f"{theirs:.4f}"))
    n = max(len(real.surface_shares), len(synth.surface_shares))
    for i in range(min(n, 4)):
        r = real.surface_shares[i] if i < len(real.surface_shares) else ("-", 0.0)
        s = synth.surface_shares[i] if i < len(synth.surface_shares) else ("-", 0.0)
        rows.append((f"surface #{i + 1} share", f"{r[0]}: {r[1]:.3f}", f"{s[0]}: {s[1]:.3f}"))
    out = [f"| statistic | {real.name} | {synth.name} |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dv365.data.calibration",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--kuairand", type=Path, default=DEFAULT_KUAIRAND)
    parser.add_argument("--data", type=Path, default=None,
                        help="a dv365 synth output folder (default: generate one)")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.kuairand.is_dir():
        print(f"{args.kuairand}: error: the KuaiRand sample is not there (it ships in the "
              "project's shared/ folder, ../shared/data/kuairand-pure-sample; pass --kuairand)",
              file=sys.stderr)
        return 2
    real = kuairand_stats(args.kuairand)
    if args.data is not None:
        synth = synth_stats(args.data)
    else:
        from dv365.data.synth import SynthConfig, synthesize

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "synth"
            synthesize(out, SynthConfig(users=args.users, seed=args.seed))
            synth = synth_stats(out)
    print(markdown(real, synth))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
