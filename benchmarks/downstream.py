"""Training throughput of the downstream models (the HSTU ranking control and its DV365
treatments, the two towers and GateNet), and the HSTU user representation's two paths, in
one process.

Run: ``python -m benchmarks downstream [--users U] [--events E] [--k K] [--dim D]
[--batch B] [--repeats R] [--device cpu|cuda] [--out FILE]``.

Data: ``dv365 synth`` output with ``--events`` events per user on average (every request
then finds K events before it), the examples of the last week; random DV365 vectors of the
demo's shape ``[13, 16]`` stand in for the store (its reads are measured in
benchmarks/stores.py).

Measured: medians of ``--repeats`` training steps (batch build from the timeline store
through the recent-events gather, forward, backward, optimizer step) after two warm-ups:
examples/s per model, and the treatment/control ratio. Baseline for the user
representation: the full HSTU forward then each sequence's last row (``last_outputs``)
against ``Hstu.last`` (the last block for the last events only), same weights, checked
equal first. The limit: the attention's multiply-adds per example (``layers x n^2 x
(d_qk + d_v)`` for full blocks) at the achieved rate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._timing import emit, median_seconds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out")
    args = parser.parse_args()

    from dv365.data.synth import SynthConfig, synthesize
    from dv365.data.timeline import TimelineStore
    from dv365.data.validate import DatasetReader
    from dv365.data.vocabulary import Vocabulary
    from dv365.downstream.adapters.build import build_adapter
    from dv365.downstream.catalogue import Catalogue
    from dv365.downstream.fit import epoch_batches
    from dv365.downstream.hstu import last_outputs
    from dv365.downstream.hstu_options import HstuOptions
    from dv365.downstream.inputs import BatchBuilder
    from dv365.downstream.ranking import HstuRanker, ranking_loss
    from dv365.downstream.retrieval import ItemFrequency
    from dv365.downstream.two_tower import TwoTower, retrieval_loss
    from dv365.model.backbones.options import DLRMOptions
    from dv365.model.config import ItemTables, Optimizers
    from dv365.model.examples import item_features, load_examples
    from dv365.model.optim import build_optimizers
    from dv365.model.tasks import Task

    device = torch.device(args.device)
    work = Path(tempfile.mkdtemp(prefix="dv365-bench-downstream-"))
    synthesize(work / "data", SynthConfig(users=args.users, seed=0, mean_events=args.events,
                                          max_events=3 * args.events, days=7,
                                          examples_per_user=max(8, args.batch // 4)))
    store = TimelineStore.open(work / "data" / "events", cache_dir=work / "cache")
    rows = ItemTables().model_dump()
    meta = DatasetReader(work / "data" / "examples", "examples").meta
    examples, meta, _ = load_examples(work / "data" / "examples", store, list(meta.tasks),
                                      rows, "request")
    tasks = tuple(Task(t, k, k == "regression") for t, k in meta.tasks.items())
    binary = [i for i, t in enumerate(tasks) if t.kind == "binary" and t.name != "skip"]
    hstu = HstuOptions(dim=args.dim, layers=2)
    sizes = dict(num_actions=len(Vocabulary.of_store(store).values("action")),
                 num_media_types=len(meta.values("media_type")))
    catalogue = Catalogue.of(store, examples, rows)
    builder = BatchBuilder(store, examples, recent=args.k, item_rows=rows, device=device,
                           catalogue=catalogue)
    batches = epoch_batches(len(examples), args.batch, 0, 0)
    features = tuple(f for f in item_features(meta, rows) if f.name != "media_id")

    def ranker(adapter):
        torch.manual_seed(0)
        return HstuRanker(hstu=hstu, dlrm=DLRMOptions(embedding_dim=args.dim),
                          recent=args.k, item_rows=rows, item_features=features,
                          num_dense=examples.dense.shape[1], tasks=tasks, adapter=adapter,
                          **sizes).to(device)

    def towers(adapter):
        torch.manual_seed(0)
        return TwoTower(hstu=hstu, recent=args.k, item_rows=rows, num_tasks=len(binary),
                        adapter=adapter, **sizes).to(device)

    def adapter(kind):
        return None if kind is None else build_adapter({"type": kind}, num_vectors=13, dim=16,
                                                       out_dim=args.dim)

    def examples_per_s(model, loss, binary_labels=False):
        optimizers = build_optimizers(model, Optimizers().sparse, Optimizers().dense)
        position = [0]

        def step():
            index = batches[position[0] % len(batches)]
            position[0] += 1
            batch = builder(index)
            if binary_labels:
                batch = type(batch)(**{**batch.__dict__, "labels": batch.labels[:, binary]})
            n = len(index)
            dv365 = (torch.randn(n, 13, 16, device=device),
                     torch.ones(n, dtype=torch.bool, device=device))
            value = loss(batch, dv365 if model_adapter(model) else None)
            for opt in optimizers.values():
                opt.zero_grad(set_to_none=True)
            value.backward()
            for opt in optimizers.values():
                opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()

        step(), step()
        return args.batch / median_seconds(step, args.repeats)

    def model_adapter(model):
        return model.user.adapter is not None

    report: dict = {"benchmark": "downstream", "device": args.device,
                    "threads": torch.get_num_threads(), "users": args.users,
                    "events_per_user": args.events, "k": args.k, "dim": args.dim,
                    "batch": args.batch, "models": {}}
    for kind in (None, "linear", "hstu_prepend"):
        model = ranker(adapter(kind))
        report["models"][f"ranking {kind or 'control'}"] = round(
            examples_per_s(model, ranking_loss(model, tasks, 1.0)))
    for kind in (None, "gatenet"):
        model = towers(adapter(kind))
        freq = [ItemFrequency(builder.targets) for _ in binary]
        loss = retrieval_loss(model, catalogue, freq, temperature=0.05)
        report["models"][f"retrieval {kind or 'control'}"] = round(
            examples_per_s(model, loss, binary_labels=True))
    control = report["models"]["ranking control"]
    report["ratio_to_control"] = {k: round(v / control, 3) for k, v in report["models"].items()}

    # The user representation: full forward + last rows vs Hstu.last, forward and backward.
    model = ranker(None)
    tower = model.user
    batch = builder(batches[0])
    seq = batch.sequences
    values = tower.items.events(seq).detach().requires_grad_(True)

    def full():
        out, _ = last_outputs(tower.hstu(values, seq.offsets, seq.timestamps, seq.query_ts),
                              seq.offsets)
        out.sum().backward()

    def last():
        tower.hstu.last(values, seq.offsets, seq.timestamps, seq.query_ts)[0].sum().backward()

    a = last_outputs(tower.hstu(values, seq.offsets, seq.timestamps, seq.query_ts),
                     seq.offsets)[0]
    b = tower.hstu.last(values, seq.offsets, seq.timestamps, seq.query_ts)[0]
    assert torch.allclose(a, b, atol=1e-5), "the two paths disagree"
    full(), last()
    t_full, t_last = median_seconds(full, args.repeats), median_seconds(last, args.repeats)
    n = int((seq.offsets[1:] - seq.offsets[:-1]).float().mean())
    macs = hstu.layers * n * n * (hstu.attention_dim + hstu.linear_dim)  # per example
    report["user_representation"] = {
        "mean_length": n, "full_ms": round(1e3 * t_full, 2), "last_ms": round(1e3 * t_last, 2),
        "speedup": round(t_full / t_last, 2),
        "full_attention_gmacs_per_s": round(3 * macs * args.batch / t_full / 1e9, 2)}
    emit(report, args.out)


if __name__ == "__main__":
    main()
