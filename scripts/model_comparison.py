"""The model quality comparison of docs/results.md (issue 5's quality bar).

Generates (or reuses) a data set with ``dv365 synth``, trains each variant (a backbone without
the user tower, or with one of the user encoders) on the same data and schedule for each
seed, then

* reports each variant's held-out metrics as mean and spread over the seeds;
* gives a paired bootstrap interval (resampling held-out *users*) of each variant's NE
  difference against the no-user-tower run of the same backbone, seeds averaged
  (:mod:`dv365.experiments.bootstrap`), and of token-wise against dim-wise where both ran;
* probes the exported user embedding (:mod:`dv365.experiments.probe`): a multinomial logistic
  regression on held-out users predicts each user's top planted stable topic
  (``truth/users.parquet``) from the encoder output at the end of the year.

    python scripts/model_comparison.py --users 2000 --epochs 1 --seeds 0,1 --out build/results

Every run keeps its record and held-out predictions (OUT/runs/<variant>/seed<k>/); running
again with the same settings reuses them, so a comparison can be built up over several
invocations (``--retrain`` trains afresh). Prints the markdown tables and writes them to
OUT/results.md (and OUT/results.json). The spec is built here, in the shape of the paper's
slices (timelines x dwell buckets x actions x windows over the three id columns), and saved
as OUT/spec.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml

from dv365.experiments.bootstrap import paired_ne_difference
from dv365.experiments.probe import feature_spread, linear_probe
from dv365.model.config import load_config
from dv365.model.foundation import embed_users
from dv365.model.train import Trainer
from dv365.slices.ir import Compare, FieldRef, Hashing, Member, Slice, SpecIR, Table
from dv365.durations import DAY_MS

BINARY = ("like", "comment", "share", "save", "follow", "complete", "skip", "profile_visit")


def paper_shaped_spec(dim: int) -> SpecIR:
    """45 slices: per id column, implicit (all, long watch, skip) and explicit (positive,
    negative) x windows (7d, 30d, all); one implicit and one explicit table per id column."""
    ids = (("media_id", "media", 32768, "hash"), ("author_id", "author", 8192, "hash"),
           ("topic_id", "topic", 256, "modulo"))
    dwell = FieldRef(field="dwell_time")
    implicit = {"all": None, "long": Compare(expr=dwell, op=">", value=10.0),
                "skip": Compare(expr=dwell, op="<", value=2.0)}
    explicit = {"pos": Member(field="action", values=("like", "share", "save", "comment",
                                                      "follow", "profile_visit")),
                "neg": Member(field="action", values=("hide", "report"))}
    windows = {"7d": 7 * DAY_MS, "30d": 30 * DAY_MS, "all": None}
    tables, slices = [], []
    for column, name, rows, hashing in ids:
        for kind, preds in (("implicit", implicit), ("explicit", explicit)):
            table = f"{name}_{kind}"
            tables.append(Table(name=table, id_column=column, num_rows=rows, dim=dim,
                                hashing=Hashing(kind=hashing)))
            for pname, pred in preds.items():
                for wname, window in windows.items():
                    extra = {} if pred is None else {"predicate": pred}
                    slices.append(Slice(name=f"{table}_{pname}_{wname}", timeline=kind,
                                        id_column=column, table=table, window_ms=window,
                                        **extra))
    return SpecIR(tables=tuple(tables), slices=tuple(slices))



# name -> (encoder section or None for no user tower, backbone type)
VARIANTS = {
    "no user tower": (None, "dlrm"),
    "fsa (token-wise)": ({"type": "fsa"}, "dlrm"),
    "fsa (dim-wise)": ({"type": "fsa", "view": "dim", "heads": 1}, "dlrm"),
    "lce (token-wise)": ({"type": "lce"}, "dlrm"),
    "mlp (token-wise)": ({"type": "mlp"}, "dlrm"),
    "mlp (dim-wise)": ({"type": "mlp", "view": "dim"}, "dlrm"),
    "transformer (token-wise)": ({"type": "transformer"}, "dlrm"),
    "identity (no compression)": ({"type": "identity"}, "dlrm"),
    "siamese: no user tower": (None, "siamese"),
    "siamese: fsa (token-wise)": ({"type": "fsa"}, "siamese"),
}


def baseline_of(name: str) -> str:
    """The no-user-tower variant with the same backbone."""
    backbone = VARIANTS[name][1]
    return next(n for n, (enc, bb) in VARIANTS.items() if enc is None and bb == backbone)


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def train_config(folder: Path, name: str, seed: int, data: Path, spec: Path, args) -> dict:
    encoder, backbone = VARIANTS[name]
    return {
        "data": {"path": str(data), "validation_days": args.validation_days},
        "spec": str(spec), "out": str(folder / "run"), "encoder": encoder,
        "backbone": {"type": backbone}, "batch_size": args.batch_size, "epochs": args.epochs,
        "eval_every": 10**9, "checkpoint_every": 10**9, "seed": seed,
        # a constant learning rate, as docs/results.md's runs were trained
        "optimizer": {"sparse": {"lr": args.lr_sparse},
                      "dense": {"lr": args.lr_dense, "schedule": {"decay": "none"}}},
        "item_features": args.item_features.split(","), "threads": args.threads,
    }


def probe_embedding(trainer: Trainer, data: Path) -> dict:
    """Probe accuracy and spread of the embedding of every user at the end of the year."""
    truth = pq.read_table(data / "truth" / "users.parquet").to_pydict()
    users = trainer.store.user_indices(np.asarray(truth["user_id"]))
    target = np.array([t[0] for t in truth["stable_topics"]])
    when = int(trainer.store.ts.max()) + 1 + trainer.ir.gap_ms
    x = embed_users(trainer.model, trainer.ir, trainer.store, users, when)
    result = linear_probe(x, target, seed=0)
    spread = feature_spread(x)
    return {"probe_acc": result.accuracy, "probe_majority": result.majority_accuracy,
            "probe_objective": [result.start_objective, result.final_objective],
            "emb_median_std": spread.median_std, "emb_min_std": spread.min_std,
            "emb_mean_abs": spread.mean_abs}


def run_variant(out: Path, name: str, seed: int, data: Path, spec: Path, args) -> dict:
    """Train (or reuse) one variant for one seed; returns its record, with predictions."""
    folder = out / "runs" / slug(name) / f"seed{seed}"
    config = train_config(folder, name, seed, data, spec, args)
    record_path, predictions_path = folder / "record.json", folder / "predictions.npz"
    if not args.retrain and record_path.exists() and predictions_path.exists():
        record = json.loads(record_path.read_text())
        if record["train_config"] == config:
            print(f"{name} seed {seed}: reusing {record_path}", flush=True)
            return {**record, **dict(np.load(predictions_path))}
    shutil.rmtree(folder, ignore_errors=True)  # never resume a stale or different run
    folder.mkdir(parents=True)
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    trainer = Trainer(load_config(path))
    result = trainer.run()
    record = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    record["wall_s"] = time.perf_counter() - start
    if VARIANTS[name][0] is not None:
        record.update(probe_embedding(trainer, data))
    record["train_config"] = config
    eval_set = trainer.eval_set
    arrays = {"probs": trainer.eval_predictions.astype(np.float32),
              "labels": eval_set.labels, "users": eval_set.user_index.astype(np.int64)}
    record["tasks"] = [t.name for t in trainer.tasks]
    np.savez_compressed(predictions_path, **arrays)
    record_path.write_text(json.dumps(record, indent=1))
    del trainer
    gc.collect()
    print(f"{name} seed {seed}:", json.dumps({k: round(v, 4) for k, v in record.items()
                                              if "/ne" in k or k in ("probe_acc", "wall_s")}),
          flush=True)
    return {**record, **arrays}


def mean_sd(values: list[float], digits: int) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def metrics_table(runs: dict[str, dict[int, dict]]) -> str:
    header = ("| variant | seeds | " + " | ".join(f"{t} NE" for t in BINARY) +
              " | watch_time MSE | probe acc | emb std / mean abs | wall s |")
    lines = [header, "|" + "---|" * (len(BINARY) + 6)]
    for name, by_seed in runs.items():
        records = list(by_seed.values())
        cells = [mean_sd([r.get(f"{t}/ne") for r in records], 4) for t in BINARY]
        probe_cell = (mean_sd([r["probe_acc"] for r in records], 3) if "probe_acc" in records[0]
                      else "-")
        spread = ("-" if "emb_median_std" not in records[0] else
                  f"{np.mean([r['emb_median_std'] for r in records]):.3g} / "
                  f"{np.mean([r['emb_mean_abs'] for r in records]):.3g}")
        lines.append(f"| {name} | {len(records)} | " + " | ".join(cells) +
                     f" | {mean_sd([r['watch_time/mse'] for r in records], 4)} | {probe_cell} | "
                     f"{spread} | {np.mean([r['wall_s'] for r in records]):.0f} |")
    return "\n".join(lines)


def comparisons(runs: dict[str, dict[int, dict]]) -> list[tuple[str, str]]:
    """(variant, reference) pairs: every user tower against its backbone's no-tower run,
    and token-wise against dim-wise of the same encoder."""
    pairs = [(n, baseline_of(n)) for n in runs
             if VARIANTS[n][0] is not None and baseline_of(n) in runs]
    for n in runs:
        if "(token-wise)" in n and n.replace("token-wise", "dim-wise") in runs:
            pairs.append((n, n.replace("token-wise", "dim-wise")))
    return pairs


def bootstrap_table(runs: dict[str, dict[int, dict]], replicates: int) -> tuple[str, list]:
    """Relative NE difference (variant vs reference, seeds paired and averaged) with a 95%
    interval from resampling held-out users; bold where the whole interval is below 0."""
    header = "| variant vs reference | seeds | " + " | ".join(BINARY) + " |"
    lines = [header, "|" + "---|" * (len(BINARY) + 2)]
    raw = []
    for name, ref in comparisons(runs):
        seeds = sorted(set(runs[name]) & set(runs[ref]))
        if not seeds:
            continue
        first = runs[name][seeds[0]]
        tasks = first["tasks"]
        for s in seeds:  # the pairing relies on the same held-out examples in the same order
            for r in (runs[name][s], runs[ref][s]):
                if not (np.array_equal(r["users"], first["users"]) and
                        np.array_equal(r["labels"], first["labels"])):
                    raise SystemExit(f"{name} / {ref} seed {s}: different held-out examples")
        cells = []
        for t in BINARY:
            k = tasks.index(t)
            iv = paired_ne_difference(
                first["labels"][:, k], np.stack([runs[name][s]["probs"][:, k] for s in seeds]),
                np.stack([runs[ref][s]["probs"][:, k] for s in seeds]), first["users"],
                replicates=replicates, seed=0, relative=True)
            raw.append({"variant": name, "reference": ref, "task": t, "seeds": seeds,
                        "estimate": iv.estimate, "low": iv.low, "high": iv.high})
            cell = f"{100 * iv.estimate:+.2f}% [{100 * iv.low:+.2f}, {100 * iv.high:+.2f}]"
            cells.append(f"**{cell}**" if iv.high < 0 else cell)
        lines.append(f"| {name} vs {ref} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines), raw


def held_out_summary(runs: dict[str, dict[int, dict]]) -> str:
    r = next(iter(next(iter(runs.values())).values()))
    positives = ", ".join(f"{t} {int(r['labels'][:, r['tasks'].index(t)].sum()):,}"
                          for t in BINARY)
    return (f"held-out: {len(r['users']):,} examples of {len(np.unique(r['users'])):,} users; "
            f"positives: {positives}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--examples-per-user", type=int, default=None,
                        help="labelled impressions per user (default: the generator's)")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--validation-days", type=int, default=3)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--lr-dense", type=float, default=2e-3)
    parser.add_argument("--lr-sparse", type=float, default=0.05)
    parser.add_argument("--item-features", default="author_id,topic_id,media_type,surface")
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    parser.add_argument("--variants", default="no user tower,fsa (token-wise),fsa (dim-wise)",
                        help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--one-seed", default="",
                        help="more variants, trained with the first seed only")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; on a shared machine one thread avoids OpenMP "
                             "threads waiting on each other (measured 0.2-10 s vs 0.4 s steps)")
    parser.add_argument("--retrain", action="store_true", help="ignore stored runs")
    parser.add_argument("--out", type=Path, default=Path("build/results"))
    args = parser.parse_args()
    names = [n.strip() for n in args.variants.split(",")]
    one_seed = [n.strip() for n in args.one_seed.split(",") if n.strip()]
    unknown = [n for n in names + one_seed if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(args.threads)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / f"data-u{args.users}-e{args.examples_per_user or 'default'}-s{args.data_seed}"
    if not data.exists():
        command = [sys.executable, "-m", "dv365.cli.app", "synth", str(data), "--users",
                   str(args.users), "--seed", str(args.data_seed)]
        if args.examples_per_user:
            command += ["--examples-per-user", str(args.examples_per_user)]
        subprocess.run(command, check=True)
    spec = out / "spec.json"
    spec.write_text(paper_shaped_spec(args.dim).to_json())
    runs: dict[str, dict[int, dict]] = {}
    for seed in seeds:  # seed-major: an interrupted comparison still has whole seeds
        for name in names:
            runs.setdefault(name, {})[seed] = run_variant(out, name, seed, data, spec, args)
    for name in one_seed:
        runs.setdefault(name, {})[seeds[0]] = run_variant(out, name, seeds[0], data, spec, args)
    truth = pq.read_table(data / "truth" / "users.parquet").to_pydict()
    top = np.array([t[0] for t in truth["stable_topics"]])
    boot, raw = bootstrap_table(runs, args.bootstrap)
    text = "\n\n".join([
        metrics_table(runs),
        f"{held_out_summary(runs)}. Probe chance (majority class, all users): "
        f"{np.bincount(top).max() / len(top):.3f} among {len(np.unique(top))} top topics.",
        "Relative NE difference, 95% paired bootstrap interval over held-out users "
        f"({args.bootstrap} replicates; bold: the whole interval below 0):",
        boot])
    (out / "results.md").write_text(text + "\n")
    summary = {name: {seed: {k: v for k, v in r.items() if not isinstance(v, np.ndarray)}
                      for seed, r in by_seed.items()} for name, by_seed in runs.items()}
    (out / "results.json").write_text(json.dumps({"runs": summary, "bootstrap": raw},
                                                 indent=1))
    print(text)


if __name__ == "__main__":
    main()
