"""Every hook a dv365 plugin can implement, in one place.

A plugin is a module (or object) with functions marked ``@dv365.hookimpl`` whose names are
hook names from this file; outside plugins are found through the ``dv365`` entry-point group
(see :mod:`dv365.plugins`). Built-in encoders, backbones and metrics are plugins too, and use
exactly these hooks.

Hooks come in two kinds:

* **Registration hooks** (``dv365_register_*``) receive a ``register`` callback and call it once
  per thing they provide. A name can be registered by one plugin only; a second registration
  of the same name is an error that names both plugins.
* **Lifecycle hooks** let a plugin add CLI commands and observe training.

Keep hook implementations cheap: registration hooks run whenever the plugin manager is built
(every ``dv365`` command), so import heavy libraries inside the factories they register.

The ``register`` callbacks and the factories they take are typed by the protocols below
(``RegisterEncoder``, ``EncoderFactory``, ...): annotate a hook implementation's argument
with them to have a type checker check the calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import pluggy

if TYPE_CHECKING:
    import click
    import numpy as np
    from pydantic import BaseModel
    from torch import nn

    from dv365.model.backbones.options import BackboneInputs

PROJECT = "dv365"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------- register callbacks
class EncoderFactory(Protocol):
    """Builds an encoder from its validated options (see ``dv365_register_encoders``)."""

    def __call__(self, options: Any, /, *, num_slices: int, dim: int) -> nn.Module: ...


class BackboneFactory(Protocol):
    """Builds a backbone from its validated options (see ``dv365_register_backbones``)."""

    def __call__(self, options: Any, /, *, inputs: BackboneInputs) -> nn.Module: ...


class AdapterFactory(Protocol):
    """Builds a downstream adapter from its validated options (see
    ``dv365_register_adapters``)."""

    def __call__(self, options: Any, /, *, num_vectors: int, dim: int,
                 out_dim: int) -> nn.Module: ...


class ExperimentFactory(Protocol):
    """Builds an experiment of ``dv365 eval`` from its validated options (see
    ``dv365_register_experiments``)."""

    def __call__(self, options: Any, /, *, name: str) -> Any: ...


class CodecFactory(Protocol):
    """Builds a codec (see ``dv365_register_codecs``)."""

    def __call__(self) -> Any: ...


class StoreFactory(Protocol):
    """Opens a store from its parsed URI (see ``dv365_register_stores``)."""

    def __call__(self, uri: Any, /) -> Any: ...


MetricFunction = Callable[["np.ndarray", "np.ndarray"], float]
"""``function(labels, predictions)`` on 1-D float64 arrays, returning a float."""


class RegisterEncoder(Protocol):
    """The ``register`` callback of ``dv365_register_encoders``."""

    def __call__(self, name: str, factory: EncoderFactory, /, *,
                 options: type[BaseModel] | None = None, doc: str | None = None) -> None: ...


class RegisterBackbone(Protocol):
    """The ``register`` callback of ``dv365_register_backbones``."""

    def __call__(self, name: str, factory: BackboneFactory, /, *,
                 options: type[BaseModel] | None = None, doc: str | None = None) -> None: ...


class RegisterAdapter(Protocol):
    """The ``register`` callback of ``dv365_register_adapters``."""

    def __call__(self, name: str, factory: AdapterFactory, /, *,
                 options: type[BaseModel] | None = None, doc: str | None = None) -> None: ...


class RegisterExperiment(Protocol):
    """The ``register`` callback of ``dv365_register_experiments``."""

    def __call__(self, name: str, factory: ExperimentFactory, /, *,
                 options: type[BaseModel] | None = None, doc: str | None = None) -> None: ...


class RegisterMetric(Protocol):
    """The ``register`` callback of ``dv365_register_metrics``; ``applies_to`` defaults to
    ``("binary",)``."""

    def __call__(self, name: str, function: MetricFunction, /, *,
                 applies_to: Sequence[str] | None = None, doc: str | None = None) -> None: ...


class RegisterCodec(Protocol):
    """The ``register`` callback of ``dv365_register_codecs``."""

    def __call__(self, name: str, factory: CodecFactory, /, *, doc: str | None = None) -> None: ...


class RegisterStore(Protocol):
    """The ``register`` callback of ``dv365_register_stores``; ``name`` is a URI scheme."""

    def __call__(self, name: str, factory: StoreFactory, /, *, doc: str | None = None) -> None: ...


# ------------------------------------------------------------------------- registration
@hookspec
def dv365_register_encoders(register: RegisterEncoder) -> None:
    """Register user encoders: modules that compress pooled slice vectors.

    Call ``register(name, factory, *, options=None, doc=None)`` once per encoder.

    * ``factory(options, *, num_slices, dim)`` returns a :class:`torch.nn.Module` with an
      integer attribute ``num_outputs``; its ``forward`` maps the pooled slices
      ``[B, num_slices, dim]`` to ``[B, num_outputs, dim]`` (the user embedding vectors).
      Subclassing :class:`dv365.model.encoders.base.Encoder` gives a checked constructor.
    * ``options`` is a pydantic model class (``extra="forbid"`` recommended) holding the
      encoder's settings; a config's ``encoder:`` section is validated against it, so a wrong
      key fails with its path (``encoder.blocks``). ``None`` means the encoder takes none.
    * ``doc`` is a one-line description for ``dv365 plugins`` (default: the factory's
      docstring's first line).
    """


@hookspec
def dv365_register_backbones(register: RegisterBackbone) -> None:
    """Register backbone simulation networks: multi-task rankers the encoder trains inside.

    Call ``register(name, factory, *, options=None, doc=None)`` once per backbone.

    * ``factory(options, *, inputs)`` gets a
      :class:`dv365.model.backbones.options.BackboneInputs` (how many user vectors of which
      dimension -- zero for a backbone without the user tower --, the target item's sparse
      features and their table sizes, the number of dense context features, the tasks) and
      returns a :class:`torch.nn.Module`.
    * Its ``forward(user, sparse, dense)`` takes the user vectors ``[B, U, D]`` (or ``None``),
      a dict of item feature name -> ``LongTensor[B]`` of rows, and the dense features
      ``[B, F]``, and returns ``[B, T]``: one logit per binary task and one prediction per
      regression task, in the order of ``inputs.tasks``.
    * ``options`` and ``doc`` as for encoders.
    """


@hookspec
def dv365_register_adapters(register: RegisterAdapter) -> None:
    """Register downstream adapters: how a downstream model consumes the exported embedding.

    Call ``register(name, factory, *, options=None, doc=None)`` once per adapter.

    * ``factory(options, *, num_vectors, dim, out_dim)`` returns a :class:`torch.nn.Module`
      for user embeddings of ``num_vectors`` rows of width ``dim`` (a store snapshot's
      ``rows`` and ``dim``) and a downstream model working in width ``out_dim``.
    * Its ``forward(vectors, found)`` takes the decoded vectors ``float32 [B, num_vectors,
      dim]`` and the found mask ``bool [B]`` (what :meth:`dv365.stores.base.Store.get`
      returns) and returns what the downstream model takes (``linear``: ``[B, K, out_dim]``
      extra sparse embeddings). A user with ``found`` False must get a learned "missing"
      input, not its zeros and not an error. An adapter that combines the embedding with the
      model's own representation takes it as a further argument (``gatenet``:
      ``forward(vectors, found, user)``, ``user [B, out_dim]``).
      Subclassing :class:`dv365.downstream.adapters.base.Adapter` gives a checked
      constructor and ``fill_missing`` (the learned missing input).
    * ``options`` and ``doc`` as for encoders (a config's ``adapter:`` section is validated
      against ``options``; ``dv365.downstream.adapters.build.build_adapter`` builds one by
      name).
    """


@hookspec
def dv365_register_experiments(register: RegisterExperiment) -> None:
    """Register experiment kinds of ``dv365 eval``: questions answered by comparing arms
    (foundation, snapshot and downstream variants) with the downstream control.

    Call ``register(name, factory, *, options=None, doc=None)`` once per kind; an eval
    config's ``experiments:`` list names kinds by ``type``.

    * ``factory(options, *, name)`` returns a
      :class:`dv365.experiments.experiment.Experiment`: its ``arms(setting)`` lists the
      :class:`~dv365.experiments.experiment.Arm` s to run (each a foundation override, a
      codec, a history limit, how the embedding is served, an adapter, the families), and
      its ``document(outcome)`` turns their finished runs (paired deltas over the control,
      snapshots, foundations, read through an
      :class:`~dv365.experiments.experiment.Outcome`) into the generic experiment document
      that ``results.json``, the Markdown tables and ``dv365 report`` draw.
    * ``options`` and ``doc`` as for encoders.
    """


@hookspec
def dv365_register_metrics(register: RegisterMetric) -> None:
    """Register evaluation metrics, reported per task at every evaluation.

    Call ``register(name, function, *, applies_to=("binary",), doc=None)``.
    ``function(labels, predictions)`` takes two 1-D float64 NumPy arrays (labels; predicted
    probabilities for binary tasks, predicted values for regression tasks) and returns a
    float. ``applies_to`` lists the task kinds (``"binary"``, ``"regression"``) it is
    computed for. Results appear in the run's metrics file as ``<task>/<name>``.
    """


@hookspec
def dv365_register_codecs(register: RegisterCodec) -> None:
    """Register embedding codecs: how an exported user's ``[rows, dim]`` float vectors become
    the bytes of a stored record, and back.

    Call ``register(name, factory, *, doc=None)`` once per codec. ``factory()`` returns a
    :class:`dv365.export.codecs.base.Codec` (``name``, ``payload_size(rows, dim)``,
    ``encode`` and ``decode``). The name is what ``dv365 export --codec`` takes and what a
    snapshot's manifest records, so readers decode with the codec that wrote it.
    """


@hookspec
def dv365_register_stores(register: RegisterStore) -> None:
    """Register embedding stores by URI scheme (``lmdb``, ``redis``, ``parquet``, ...).

    Call ``register(scheme, factory, *, doc=None)`` once per scheme. ``factory(uri)`` gets a
    parsed :class:`dv365.stores.uri.StoreUri` and returns a :class:`dv365.stores.base.Store`
    (versioned snapshots: stage, write, publish, read). ``dv365 export --to``, ``dv365
    lookup`` and ``dv365 store`` open stores only through this registry.
    """


# ---------------------------------------------------------------------------- lifecycle
@hookspec
def dv365_add_commands(cli: click.Group) -> None:
    """Add subcommands to the ``dv365`` command line.

    ``cli`` is the :class:`click.Group` behind ``dv365``; call ``cli.add_command(command)``
    with any Click command or group. Raise :class:`dv365.errors.Dv365Error` subclasses for
    user errors so that they print as one line.
    """


@hookspec
def dv365_on_train_step(step: int, losses: dict[str, float], run_dir: str) -> None:
    """Observe one optimizer step of ``dv365 train`` (called after the step).

    ``step`` counts from 1 across resumes; ``losses`` maps ``"total"`` and every task name to
    its loss on the batch; ``run_dir`` is the run's output folder. Observers must not change
    the model; a slow observer slows training.
    """


@hookspec
def dv365_on_eval(step: int, metrics: dict[str, float], run_dir: str) -> None:
    """Observe one evaluation of ``dv365 train`` on the held-out split.

    ``metrics`` maps ``"<task>/<metric>"`` (``like/ne``, ``like/auc``, ``watch_time/mse``) to
    values; it is the record also appended to ``run_dir/metrics.jsonl``.
    """
