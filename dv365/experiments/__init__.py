"""Experiments: how a trained model is judged, apart from how it is trained.

* :mod:`dv365.experiments.evaluation` (``dv365 eval``): the production protocol in a
  resumable run directory, the main comparison and every configured experiment;
  :mod:`~dv365.experiments.eval_config` its config, :mod:`~dv365.experiments.units` the
  plan of its units, :mod:`~dv365.experiments.eval_tables` and
  :mod:`~dv365.experiments.experiment_tables` the paired tables and experiment documents,
  :mod:`~dv365.experiments.run_summary` provenance and the data summary;
* :mod:`dv365.experiments.experiment`: what an experiment kind is (arms, the outcome it
  reads, the generic document); :mod:`dv365.experiments.kinds` the built-in kinds;
* :mod:`dv365.experiments.bootstrap`: paired bootstrap intervals of NE and mean
  differences between two models on the same held-out examples;
* :mod:`dv365.experiments.probe`: linear probes of the exported user embedding;
  :mod:`dv365.experiments.sequential`: the HSTU check in MovieLens's shape.

This stage reads trained models, snapshots and predictions; nothing in training or export
imports from it.
"""
