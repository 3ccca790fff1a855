"""The model quality comparison of docs/results.md (issue 5's quality bar).

Generates (or reuses) a data set with ``dv365 synth``, trains the DLRM backbone without the user
tower and with each user encoder on the same data, seed and schedule, then probes the exported
user embedding: a multinomial logistic regression on held-out users predicts each user's top
planted stable topic (``truth/users.parquet``) from the encoder output at the end of the year.

    python scripts/model_comparison.py --users 2000 --epochs 2 --out build/results

Prints the markdown table (and writes it to OUT/results.md). The spec is built here, in the
shape of the paper's slices (timelines x dwell buckets x actions x windows over the three id
columns), and saved as OUT/spec.json.
"""

from __future__ import annotations

import argparse
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

from dv365.slices.ir import Compare, FieldRef, Hashing, Member, Slice, SpecIR, Table

DAY_MS = 86_400_000
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


VARIANTS = {
    "no user tower": None,
    "fsa (token-wise)": {"type": "fsa"},
    "fsa (dim-wise)": {"type": "fsa", "view": "dim", "heads": 1},
    "lce (token-wise)": {"type": "lce"},
    "mlp (token-wise)": {"type": "mlp"},
    "mlp (dim-wise)": {"type": "mlp", "view": "dim"},
    "transformer (token-wise)": {"type": "transformer"},
    "identity (no compression)": {"type": "identity"},
}


def run_variant(out: Path, name: str, encoder, data: Path, spec: Path, args) -> dict:
    folder = out / ("run_" + "".join(c if c.isalnum() else "_" for c in name))
    shutil.rmtree(folder / "run", ignore_errors=True)  # a comparison always trains afresh
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "data": {"path": str(data), "validation_days": args.validation_days},
        "spec": str(spec), "out": str(folder / "run"), "encoder": encoder,
        "backbone": {"type": "dlrm"}, "batch_size": args.batch_size, "epochs": args.epochs,
        "eval_every": 100000, "checkpoint_every": 100000, "seed": args.seed,
        "optimizer": {"sparse": {"lr": args.lr_sparse}, "dense": {"lr": args.lr_dense}},
        "item_features": args.item_features.split(","),
    }
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dv365.cli.app", "train", str(path)], check=True)
    last = [json.loads(x) for x in (folder / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    last["wall_s"] = time.perf_counter() - start
    last["config"] = str(path)
    return last


def probe(run_dir: Path, data: Path, seed: int) -> float:
    """Held-out accuracy of a linear probe for each user's top stable topic."""
    from dv365.model.config import load_config
    from dv365.model.train import Trainer
    from dv365.model.checkpoint import latest_checkpoint, load_checkpoint
    from dv365.kernels.jagged import slice_jagged

    trainer = Trainer(load_config(run_dir.parent / "train.yaml"))
    trainer.model.load_state_dict(load_checkpoint(latest_checkpoint(run_dir)).model)
    trainer.model.eval()
    truth = pq.read_table(data / "truth" / "users.parquet").to_pydict()
    users = trainer.store.user_indices(np.asarray(truth["user_id"]))
    target = np.array([t[0] for t in truth["stable_topics"]])
    when = int(trainer.store.ts.max()) + 1 + trainer.ir.gap_ms
    vectors = []
    with torch.no_grad():
        for lo in range(0, len(users), 256):
            u = users[lo:lo + 256]
            jag = slice_jagged(trainer.ir, trainer.store, u, np.full(len(u), when))
            vectors.append(trainer.model.user_vectors(jag.kjt).flatten(1))
    x = torch.cat(vectors)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(users))
    cut = int(0.7 * len(users))
    tr, te = order[:cut], order[cut:]
    classes, y = np.unique(target, return_inverse=True)
    y = torch.from_numpy(y)
    torch.manual_seed(seed)
    lin = torch.nn.Linear(x.shape[1], len(classes))
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(x[tr]), y[tr]) + 1e-3 * lin.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    pred = lin(x[te]).argmax(1)
    return float((pred == y[te]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--validation-days", type=int, default=3)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--lr-dense", type=float, default=3e-3)
    parser.add_argument("--lr-sparse", type=float, default=0.05)
    parser.add_argument("--item-features", default="media_id,author_id,topic_id,media_type,"
                                                   "surface")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("build/results"))
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "dv365.cli.app", "synth", str(data), "--users",
                        str(args.users), "--seed", str(args.seed)], check=True)
    spec = out / "spec.json"
    spec.write_text(paper_shaped_spec(args.dim).to_json())
    rows = []
    truth = pq.read_table(data / "truth" / "users.parquet").to_pydict()
    top = np.array([t[0] for t in truth["stable_topics"]])
    majority = np.bincount(top).max() / len(top)
    for name in args.variants.split(","):
        record = run_variant(out, name, VARIANTS[name], data, spec, args)
        record["probe_acc"] = (probe(Path(record["config"]).parent / "run", data, args.seed)
                               if VARIANTS[name] is not None else float("nan"))
        rows.append((name, record))
        print(name, json.dumps({k: v for k, v in record.items() if "/ne" in k or k in
                                ("probe_acc", "wall_s")}), flush=True)
    header = ("| variant | " + " | ".join(f"{t} NE" for t in BINARY) + " | watch_time MSE | "
              "probe acc | train ex/s |")
    lines = [header, "|" + "---|" * (len(BINARY) + 4)]
    for name, r in rows:
        cells = [f"{r.get(f'{t}/ne'):.4f}" if r.get(f"{t}/ne") is not None else "n/a"
                 for t in BINARY]
        probe_cell = "-" if np.isnan(r["probe_acc"]) else f"{r['probe_acc']:.3f}"
        lines.append(f"| {name} | " + " | ".join(cells) +
                     f" | {r['watch_time/mse']:.4f} | {probe_cell} | "
                     f"{r.get('train/samples_per_s', 0):,.0f} |")
    lines.append(f"\nprobe chance (majority class): {majority:.3f}; "
                 f"{len(np.unique(top))} distinct top topics")
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
