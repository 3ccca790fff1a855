"""The elaboration passes of the slice compiler (driven by :mod:`dv365.slices.elaborate`).

In pipeline order: :mod:`~dv365.slices.passes.scopes` (includes, ``for`` expansion,
scopes), :mod:`~dv365.slices.passes.declarations` (definitions, ``gap``, ``dim``, and
tables through :mod:`~dv365.slices.passes.tables`), :mod:`~dv365.slices.passes.slices`
(slices and windows). They share :mod:`~dv365.slices.passes.expressions` (what an expression
means), :mod:`~dv365.slices.passes.names` (name templates, unknown names),
:mod:`~dv365.slices.passes.normal_form` (IR constructors that keep the normal form),
:mod:`~dv365.slices.passes.values` (typed values) and :mod:`~dv365.slices.passes.report`
(diagnostics).
"""
