"""The report page: one self-contained HTML file of a run directory.

Everything is inline (CSS, SVG figures); the page names no URL, so it opens the same from a
disk, an e-mail or an air-gapped machine. Every string that came from the run directory is
escaped. The layout is one column of at most 72rem; figures take the full width of their
grid cell (two per row on a desktop, one on a phone) and tables scroll sideways in their own
box. The same run directory gives the same bytes: nothing here reads a clock.
"""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any, Iterable

from dv365 import __version__
from dv365.durations import moment_text
from dv365.experiments.eval_tables import MIN_HITS
from dv365.paths import display_path
from dv365.report import figures
from dv365.report.numbers import (AVERAGE_NE, better, finite, interval_text, mean_sd,
                                  metric_label, percent, significant, value_text)
from dv365.report.run_dir import DataSummary, Experiment, Family, Interval, RunDir

CSS = """
:root { --ink: #1b1f24; --muted: #57606a; --line: #d0d7de; --soft: #f6f8fa;
        --pass: #1a7f37; --fail: #cf222e; --open: #6e7781; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.6rem; margin: 0.2rem 0; }
h2 { font-size: 1.3rem; margin: 0 0 0.4rem; }
h3 { font-size: 1.05rem; margin: 1rem 0 0.3rem; }
section { border-top: 1px solid var(--line); padding: 1.2rem 0 0.6rem; }
p { margin: 0.4rem 0; }
.path, .muted { color: var(--muted); }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
              font-size: 0.9em; overflow-wrap: anywhere; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 1rem;
           margin: 0.6rem 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
nav ol { display: flex; flex-wrap: wrap; gap: 0.3rem 1rem; padding: 0; margin: 0.6rem 0;
         list-style: none; }
nav a { color: #0969da; }
.question { font-style: italic; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 26rem), 1fr));
           gap: 0.8rem; margin: 0.6rem 0; }
.figures svg { width: 100%; height: auto; display: block; }
.table { overflow-x: auto; margin: 0.5rem 0; border: 1px solid var(--line);
         border-radius: 6px; }
table { border-collapse: separate; border-spacing: 0; font-size: 0.9rem; min-width: 100%; }
th, td { padding: 0.3rem 0.6rem; text-align: right; white-space: nowrap;
         border-bottom: 1px solid var(--line); }
th:first-child, td:first-child { text-align: left; position: sticky; left: 0;
                                 background: #fff; }
thead th { background: var(--soft); }
thead th:first-child { background: var(--soft); }
tr:last-child td { border-bottom: 0; }
td.good { font-weight: 700; }
ul.bars { list-style: none; padding: 0; margin: 0.5rem 0; }
ul.bars li { margin: 0.3rem 0; display: flex; gap: 0.5rem; align-items: baseline;
             flex-wrap: wrap; }
.badge { display: inline-block; min-width: 3.6rem; text-align: center; border-radius: 1rem;
         padding: 0 0.5rem; color: #fff; font-size: 0.8rem; font-weight: 700; }
.badge.pass { background: var(--pass); }
.badge.fail { background: var(--fail); }
.badge.open { background: var(--open); }
.reading { background: var(--soft); border-left: 4px solid #0969da; padding: 0.5rem 0.8rem; }
ul.missing li { margin: 0.2rem 0; overflow-wrap: anywhere; }
.note { font-size: 0.9rem; color: var(--muted); }
details { margin: 0.4rem 0; }
pre { overflow-x: auto; background: var(--soft); padding: 0.5rem 0.8rem; border-radius: 6px;
      font-size: 0.85rem; }
.partial { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px;
           padding: 0.4rem 0.8rem; }
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def section_id(prefix: str, name: str, taken: set[str]) -> str:
    """A fragment id for ``name`` (letters, digits, ``-``), unique among ``taken``."""
    base = f"{prefix}-" + (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "x")
    found, k = base, 2
    while found in taken:
        found, k = f"{base}-{k}", k + 1
    taken.add(found)
    return found


def _facts(rows: Iterable[tuple[str, Any]]) -> str:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows if v is not None)
    return f'<dl class="facts">{items}</dl>' if items else ""


def _table(head: list[str], rows: list[list[tuple[str, bool]]]) -> str:
    """A table in its own scrolling box; cells are (escaped html, emphasised)."""
    th = "".join(f'<th scope="col">{h}</th>' for h in head)
    body = "".join("<tr>" + "".join(f'<td{" class=good" if good else ""}>{cell}</td>'
                                    for cell, good in row) + "</tr>" for row in rows)
    return f'<div class="table"><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody>' \
           f"</table></div>"


def _figures(svgs: Iterable[str | None]) -> str:
    drawn = [s for s in svgs if s]
    return f'<div class="figures">{"".join(drawn)}</div>' if drawn else ""


def _delta_cell(i: Interval | None, metric: str) -> tuple[str, bool]:
    if i is None:
        return "-", False
    if i.control_hits is not None and i.control_hits < MIN_HITS:
        return _e(f"not estimable ({i.control_hits:.0f} hits)"), False
    return _e(interval_text(i, metric)), significant(i, better(metric))


def _code(value: Any) -> str | None:
    return None if value is None else f"<code>{_e(value)}</code>"


def _header(run: RunDir) -> str:
    p = run.provenance
    rows: list[tuple[str, Any]] = []
    if p is not None:
        spec = None
        if p.spec_path or p.spec_hash:
            spec = _code(p.spec_path or "?") + (f" (IR hash <code>{_e(p.spec_hash)}</code>)"
                                               if p.spec_hash else "")
        checkpoint = None
        if p.checkpoint_path:
            checkpoint = _code(p.checkpoint_path) + (f" (step {p.checkpoint_step:,})"
                                                    if p.checkpoint_step is not None else "")
        listed = [f"{_e(arm)}: <code>{_e(sid)}</code>" for arm, sid in p.snapshots.items()]
        snapshots = ", ".join(listed) or None
        if len(listed) > 3:  # an experiment suite exports dozens: the base one, then a fold
            snapshots = (f"{listed[0]}<details><summary>{len(listed) - 1} more</summary>"
                         f"{', '.join(listed[1:])}</details>")
        rows = [("command", _code(p.command)), ("config", _code(p.config)),
                ("data", _code(p.data)), ("slice spec", spec), ("checkpoint", checkpoint),
                ("snapshots", snapshots),
                ("dv365", _e(p.version) if p.version else None),
                ("commit", _code(p.commit) if p.commit else "unknown"),
                ("started", _e(p.started) if p.started else None),
                ("finished", _e(p.finished) if p.finished else "not finished")]
    partial = ""
    if run.missing:
        count = len(run.missing)
        partial = (f'<p class="partial">A partial run: {count} part{"s" if count != 1 else ""} '
                   f'could not be shown (<a href="#missing">Missing</a>).</p>')
    config = ""
    if run.eval_config is not None:
        config = ("<details><summary>The evaluation's config (eval.json)</summary>"
                  f"<pre>{_e(json.dumps(run.eval_config, indent=2))}</pre></details>")
    return (f"<header><h1>dv365 evaluation report</h1>"
            f'<p class="path mono">{_e(display_path(run.path))}</p>{_facts(rows)}{config}'
            f"{partial}</header>")


def _family_variants(family: Family) -> str:
    names = sorted({m for v in family.variants for m in v.metrics},
                   key=lambda m: (family.tasks.index(m.split("/")[0])
                                  if m.split("/")[0] in family.tasks else len(family.tasks), m))
    head = ["model", "seeds", "examples/s", "parameters"] + [_e(metric_label(m)) for m in names]
    rows = []
    for v in family.variants:
        eps = v.examples_per_s
        rows.append([(_e(v.name), False), (_e(value_text(v.seeds)), False),
                     (_e(f"{eps.mean:,.0f}") if eps and finite(eps.mean) else "-", False),
                     (_e(value_text(v.parameters)), False)]
                    + [(_e(mean_sd(v.metrics.get(m))), False) for m in names])
    return _table(head, rows)


def _family_deltas(family: Family, metrics: list[str]) -> str:
    ranking = family.name == "ranking"
    head = ["treatment"] + (["average NE"] if ranking and family.average_binary_ne else []) \
        + [_e(metric_label(m)) for m in metrics]
    rows = []
    for variant, row in family.deltas.items():
        cells = [(_e(variant), False)]
        if ranking and family.average_binary_ne:
            cells.append((_e(percent(family.average_binary_ne.get(variant))), False))
        cells += [_delta_cell(row.get(m), m) for m in metrics]
        rows.append(cells)
    return _table(head, rows)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _ranking(family: Family) -> str:
    out = ['<section id="ranking"><h2>Ranking</h2>']
    if family.empty:
        return out[0] + '<p class="muted">No ranking model finished on every seed.</p></section>'
    out.append(f"<p>HSTU + DLRM on {_count(len(family.seeds), 'seed')} "
               f"({_e(', '.join(str(s) for s in family.seeds))}); tasks "
               f"{_e(', '.join(family.tasks))}. Deltas are relative to the control with a "
               f"95% paired bootstrap interval over held-out users; bold where the interval "
               f"lies entirely on the better side.</p>")
    out.append(_figures([figures.ranking_deltas(family)]))
    out.append("<h3>Models (mean ± sd over seeds)</h3>" + _family_variants(family))
    if family.deltas:
        metrics = [m for m in figures.ranking_metrics(family) if m != AVERAGE_NE]
        out.append("<h3>Relative delta over the control (lower is better)</h3>"
                   + _family_deltas(family, metrics))
    return "".join(out) + "</section>"


def _retrieval(family: Family) -> str:
    out = ['<section id="retrieval"><h2>Retrieval</h2>']
    if family.empty:
        return out[0] + ('<p class="muted">No retrieval model finished on every seed.</p>'
                         "</section>")
    queries = ", ".join(f"{t} {n:,}" for t, n in family.queries.items())
    out.append(f"<p>Two towers on {_count(len(family.seeds), 'seed')}; hit rate against the full "
               f"catalogue{_e(f' (queries: {queries})') if queries else ''}. A relative "
               f"delta needs at least {MIN_HITS} control hits per seed: with fewer it is "
               f"marked not estimable and its hit count is shown.</p>")
    out.append(_figures([figures.retrieval_hits(family), figures.retrieval_deltas(family)]))
    out.append("<h3>Models (mean ± sd over seeds)</h3>" + _family_variants(family))
    if family.deltas:
        out.append("<h3>Relative delta over the control (higher is better)</h3>"
                   + _family_deltas(family, figures.retrieval_metrics(family)))
    return "".join(out) + "</section>"


def _badge(passed: bool | None) -> str:
    kind, word = {True: ("pass", "pass"), False: ("fail", "fail"),
                  None: ("open", "open")}[passed]
    return f'<span class="badge {kind}">{word}</span>'


def _experiment(exp: Experiment, anchor: str, word_at: float | None) -> str:
    out = [f'<section id="{anchor}" class="experiment"><h2>{_e(exp.title)}</h2>']
    if exp.question:
        out.append(f'<p class="question">{_e(exp.question)}</p>')
    meta = [f"kind <code>{_e(exp.kind)}</code>"]
    if exp.name != exp.kind:
        meta.append(f"name <code>{_e(exp.name)}</code>")
    if exp.baseline:
        meta.append(f"deltas against <strong>{_e(exp.baseline)}</strong>")
    if exp.seeds:
        meta.append(f"seeds {_e(', '.join(str(s) for s in exp.seeds))}")
    out.append(f'<p class="muted">{" · ".join(meta)}</p>')
    if exp.bars:
        items = "".join(f"<li>{_badge(b.passed)}<span>{_e(b.text)}</span>"
                        + (f' <span class="mono">{_e(b.value)}</span>' if b.value else "")
                        + "</li>" for b in exp.bars)
        out.append(f'<ul class="bars">{items}</ul>')
    panels = figures.experiment_figures(exp, anchor, word_at)
    out.append(_figures(panels) if panels else
               '<p class="muted">No finished arm to draw yet.</p>')
    if exp.reading:
        out.append(f'<p class="reading">{_e(exp.reading)}</p>')
    metrics = exp.metric_names
    if exp.series:
        axis = exp.axis.label if exp.axis and exp.axis.label else "x"
        with_x = any(p.x is not None for p in exp.series)
        head = ["arm"] + ([_e(axis)] if with_x else []) + [_e(metric_label(m)) for m in metrics]
        rows = []
        for p in exp.series:
            cells = [(_e(p.label), False)] + ([(_e(value_text(p.x)), False)] if with_x else [])
            cells += [(_e(interval_text(p.metrics[m], m)), significant(p.metrics[m], better(m)))
                      if m in p.metrics else ("-", False) for m in metrics]
            rows.append(cells)
        out.append("<h3>Series</h3>" + _table(head, rows))
    if exp.table:
        columns = exp.columns or sorted({k for r in exp.table for k in r} - {"arm"})
        rows = [[(_e(value_text(r.get("arm", ""))), False)]
                + [(_e(value_text(r.get(c))), False) for c in columns] for r in exp.table]
        out.append("<h3>Per arm</h3>" + _table(["arm"] + [_e(c) for c in columns], rows))
    if exp.missing:
        out.append('<p class="note">Not finished: ' + _e(", ".join(exp.missing)) + "</p>")
    return "".join(out) + "</section>"


def _missing(run: RunDir) -> str:
    if not run.missing:
        return ('<section id="missing"><h2>Missing</h2><p>Nothing is missing: every part of '
                "the run was read.</p></section>")
    items = "".join(f"<li><code>{_e(m.part)}</code>: {_e(m.reason)}</li>" for m in run.missing)
    return (f'<section id="missing"><h2>Missing</h2><p>{len(run.missing)} part'
            f'{"s" if len(run.missing) != 1 else ""} of the run could not be shown:</p>'
            f'<ul class="missing">{items}</ul></section>')


def _fact(key: str, value: Any) -> tuple[str, str]:
    """A periods or snapshot entry as people read it: ``export_ms`` -> ``export`` (a UTC
    moment), ``eval_users`` -> ``eval users``."""
    if key.endswith("_ms") and finite(value) and value > 0:
        return key[:-len("_ms")].replace("_", " ") + " (UTC)", moment_text(int(value))
    return key.replace("_", " "), value_text(value)


def _data(run: RunDir) -> str:
    out = ['<section id="data"><h2>Data</h2>']
    s: DataSummary | None = run.data_summary
    if s is not None:
        days = f"{s.first_day} to {s.last_day}" if s.first_day and s.last_day else None
        out.append(_facts([("users", _e(value_text(s.users)) if s.users is not None else None),
                           ("events", _e(value_text(s.events)) if s.events is not None
                            else None),
                           ("examples", _e(value_text(s.examples)) if s.examples is not None
                            else None),
                           ("days", _e(days) if days else None),
                           ("tasks", _e(", ".join(f"{t} ({k})" for t, k in s.tasks.items()))
                            if s.tasks else None)]))
        if s.quantiles:
            out.append("<h3>Events per user</h3>" + _table(
                [_e(q) for q in s.quantiles],
                [[(_e(value_text(v)), False) for v in s.quantiles.values()]]))
        out.append(_figures([figures.history_lengths(s), figures.label_rates(s)]))
    for title, doc in (("Periods", run.periods), ("Snapshot", run.snapshot)):
        if doc:
            facts = (_fact(k, v) for k, v in doc.items())
            out.append(f"<h3>{title}</h3>" + _facts(
                (k, f'<span class="mono">{_e(v)}</span>') for k, v in facts))
    if len(out) == 1:
        out.append('<p class="muted">No data summary in the run directory.</p>')
    return "".join(out) + "</section>"


def _word_at(run: RunDir) -> float | None:
    """Where an axis word ("all" events) is drawn: the data's longest history."""
    s = run.data_summary
    return s.quantiles.get("max") if s is not None else None


def render(run: RunDir) -> str:
    """The report page of ``run`` as HTML text."""
    taken = {"ranking", "retrieval", "missing", "data"}
    anchors = [section_id("experiment", e.name, taken) for e in run.experiments]
    # A family the evaluation's config turned off (``retrieval: null``) has no section.
    off = {f for f in ("ranking", "retrieval")
           if isinstance(run.eval_config, dict) and f in run.eval_config
           and run.eval_config[f] is None and run.families.get(f, None) is not None
           and run.families[f].empty}
    toc = [(f in run.families and f not in off and f, f.capitalize())
           for f in ("ranking", "retrieval")]
    toc += list(zip(anchors, (e.title for e in run.experiments)))
    toc += [("missing", f"Missing ({len(run.missing)})"), ("data", "Data")]
    nav = "".join(f'<li><a href="#{a}">{_e(t)}</a></li>' for a, t in toc if a)
    body = [_header(run), f"<nav><ol>{nav}</ol></nav>"]
    if "ranking" in run.families and "ranking" not in off:
        body.append(_ranking(run.families["ranking"]))
    if "retrieval" in run.families and "retrieval" not in off:
        body.append(_retrieval(run.families["retrieval"]))
    word_at = _word_at(run)
    body += [_experiment(e, a, word_at) for e, a in zip(run.experiments, anchors)]
    body += [_missing(run), _data(run)]
    body.append(f'<footer class="note">Written by <code>dv365 report</code> {_e(__version__)}'
                "</footer>")
    title = f"dv365 report: {display_path(run.path)}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n")
