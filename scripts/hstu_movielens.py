"""HSTU next-item check on a MovieLens release (the HSTU paper's MovieLens-1M protocol).

Imports the release under SRC with ``dv365 import movielens`` into OUT/data (once; reused
after), then trains and evaluates by :mod:`dv365.experiments.sequential`: leave-one-out,
sampled softmax, HR@10 / NDCG@10 against the whole catalogue, early stopping on validation
HR@10. Prints the result as JSON and writes it to OUT/result.json.

    python scripts/hstu_movielens.py ~/data/ml-1m --out build/hstu-ml1m --epochs 100

The defaults are the reference's MovieLens-1M setting (``max_len`` 200, ``d`` 50, two
blocks, one head, dropout 0.2, 128 negatives, temperature 0.05, batch 128, lr 1e-3); the
paper reports HR@10 0.3097 and NDCG@10 0.1720 for HSTU there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dv365.atomic_write import write_text
from dv365.data.importers.movielens import import_movielens
from dv365.downstream.hstu_options import HstuOptions
from dv365.experiments.sequential import run_movielens_check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="the MovieLens release (folder or ratings file)")
    parser.add_argument("--out", type=Path, required=True, help="work folder")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--dropout", type=float, default=0.2,
                        help="dropout of the input embedding and inside each block")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--negatives", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--exclude-history", action="store_true",
                        help="rank without the user's seen items, as the reference does")
    parser.add_argument("--shuffle-within-users", action="store_true",
                        help="the control: each user's items in a random order")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    args = parser.parse_args()

    data = args.out / "data"
    if not (data / "events").exists():
        import_movielens(args.src, data)
    options = HstuOptions(dim=args.dim, layers=args.layers, heads=args.heads,
                          max_len=args.max_len, dropout=args.dropout)
    result = run_movielens_check(
        data, options=options, epochs=args.epochs, seed=args.seed,
        batch_size=args.batch_size, learning_rate=args.lr, negatives=args.negatives,
        temperature=args.temperature, input_dropout=args.dropout, patience=args.patience,
        exclude_history=args.exclude_history,
        shuffle_within_users=args.shuffle_within_users, device=args.device,
        cache_dir=args.out / "cache", log=lambda line: print(line, file=sys.stderr))
    result["settings"] = vars(args) | {"src": str(args.src), "out": str(args.out)}
    text = json.dumps(result, indent=2)
    write_text(args.out / "result.json", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
