"""The report's figures, drawn with matplotlib into SVG text that an HTML page inlines.

Each function returns the SVG of one panel, or ``None`` when there is nothing to draw; a
page lays panels out in a grid, one per row on a phone. Figures are built on
:class:`matplotlib.figure.Figure` directly: no pyplot, so no backend or global style is
switched for the process, and the settings of each drawing are scoped by ``rc_context``.

The SVG is deterministic for the same input (fixed ``svg.hashsalt``, no date) and
self-contained: glyphs are drawn as paths (no font to fetch), the XML prologue, metadata
and namespace declarations that name URLs are dropped (HTML needs none of them), and every
``id`` is prefixed with the figure's key so that many figures can share one page.

Colours are the Okabe-Ito palette, distinguishable with the common colour-vision
deficiencies; bars and lines are also told apart by their legend order and markers.
"""

from __future__ import annotations

import io
import re
import textwrap
from typing import Any, Callable, Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from dv365.experiments.eval_tables import MIN_HITS
from dv365.report.numbers import (AVERAGE_NE, better, finite, is_relative, metric_label,
                                  value_text)
from dv365.report.run_dir import DataSummary, Experiment, Family, Interval

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000",
           "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
WIDTH_IN = 4.6  # about 440 px: one panel is the page's half on a desktop, its width on a phone
STYLE = {
    "svg.hashsalt": "dv365-report", "svg.fonttype": "path", "font.family": "DejaVu Sans",
    # 12 pt in a 4.6 in panel stays about 12 px on a 390 px phone screen
    "font.size": 13, "axes.titlesize": 13, "axes.labelsize": 12.5, "xtick.labelsize": 12,
    "ytick.labelsize": 12, "legend.fontsize": 12, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.color": "#dddddd",
    "grid.linewidth": 0.6, "axes.axisbelow": True, "axes.titlelocation": "left",
}
_LABEL_CHARS = 40

# Where an (estimate, low, high) triple comes from: (category, group) -> interval or None.
Values = Callable[[str, str], "Interval | None"]


def _literal(text: Any) -> str:
    """A string as matplotlib draws it, character for character (no mathtext)."""
    return str(text).replace("$", r"\$")


def _wrapped(text: str, width: int = 34) -> str:
    """An axis label on lines that fit a panel's width; a ``(remark)`` on a line of its own."""
    head, paren, tail = text.partition(" (")
    lines = textwrap.wrap(_literal(head), width)
    if paren:
        lines += textwrap.wrap(_literal("(" + tail), width)
    return "\n".join(lines)


def _plain(text: Any) -> str:
    """A run directory's name as a tick or legend label: literal, and short enough."""
    text = str(text)
    if len(text) > _LABEL_CHARS:
        text = text[:_LABEL_CHARS - 1] + "…"
    return _literal(text)


def _svg(fig: Figure, key: str, label: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", key)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r'(xlink:href|href)="#([^"]+)"', rf'\1="#{prefix}-\2"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)
    svg = re.sub(r'<svg\s+width="[^"]*"\s+height="[^"]*"',
                 lambda m: f'<svg role="img" aria-label="{_attribute(label)}" '
                           f'preserveAspectRatio="xMinYMin meet"', svg, count=1)
    return svg.strip()


def _attribute(text: str) -> str:
    return (text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def _draw(key: str, label: str, height_in: float, draw: Callable[[Figure], None]) -> str:
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(WIDTH_IN, height_in), layout="constrained")
        draw(fig)
        return _svg(fig, key, label)


def _bars_height(rows: int) -> float:
    return min(12.0, max(2.6, 1.3 + 0.26 * rows))


def _legend(fig: Figure, ax, count: int) -> None:
    if count:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center",
                   ncols=min(count, 3), frameon=False)


def _grouped_bars(fig: Figure, categories: Sequence[str], groups: Sequence[str],
                  values: Values, *, scale: float, xlabel: str, title: str = "",
                  tick: Callable[[str], str] = str, legend: Callable[[str], str] = str,
                  note: Callable[[str, str], str | None] | None = None,
                  zero_line: bool = True) -> None:
    """Horizontal bars: a block of ``groups`` bars per category, intervals as error bars;
    ``tick`` and ``legend`` name categories and groups.

    A (category, group) without a value draws no bar; ``note`` may put a word there
    instead (``not estimable``)."""
    ax = fig.add_subplot()
    n = len(groups)
    height = 0.8 / n
    for g, group in enumerate(groups):
        colour = PALETTE[g % len(PALETTE)]
        ys, xs, spans = [], [], []
        for c, category in enumerate(categories):
            y = c + (g - (n - 1) / 2) * height
            i = values(category, group)
            if i is None or not finite(i.estimate):
                text = note(category, group) if note else None
                if text:
                    ax.text(0, y, f" {text}", va="center", ha="left", fontsize=11,
                            color="#555555", style="italic")
                continue
            ys.append(y)
            xs.append(i.estimate * scale)
            if finite(i.low) and finite(i.high):
                spans.append((y, i.estimate * scale, i.low * scale, i.high * scale))
        ax.barh(ys, xs, height=height * 0.92, color=colour, label=_plain(legend(group)))
        if spans:
            ax.errorbar([s[1] for s in spans], [s[0] for s in spans],
                        xerr=[[s[1] - s[2] for s in spans], [s[3] - s[1] for s in spans]],
                        fmt="none", ecolor="#333333", elinewidth=1.1, capsize=3)
    ax.set_yticks(range(len(categories)), [_plain(tick(c)) for c in categories])
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    if zero_line:
        ax.axvline(0, color="#333333", linewidth=0.9)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.set_xlabel(_wrapped(xlabel))
    ax.set_title(_literal(title))
    _legend(fig, ax, n)


def ranking_metrics(family: Family) -> list[str]:
    """The ranking deltas' metrics: NE or MSE per task in task order, then the average."""
    names = [f"{t}/ne" if family.kinds.get(t, "binary") == "binary" else f"{t}/mse"
             for t in family.tasks]
    seen = {m for row in family.deltas.values() for m in row}
    names = [n for n in names if n in seen] + sorted(seen - set(names))
    return names + ([AVERAGE_NE] if family.average_binary_ne else [])


def ranking_deltas(family: Family, key: str = "ranking-deltas") -> str | None:
    """Each treatment's relative NE (MSE for regression tasks) delta over the control per
    task, with its 95% paired bootstrap interval, and the average over binary tasks."""
    if not family.deltas:
        return None
    metrics = ranking_metrics(family)

    def values(metric: str, variant: str) -> Interval | None:
        if metric == AVERAGE_NE:
            return Interval(family.average_binary_ne.get(variant))
        return family.deltas[variant].get(metric)

    return _draw(key, "ranking: relative delta over the control per task",
                 _bars_height(len(metrics) * len(family.deltas)),
                 lambda fig: _grouped_bars(
                     fig, metrics, list(family.deltas), values, scale=100, tick=metric_label,
                     title="Treatments against the control",
                     xlabel="relative NE delta, % (lower is better)"))


def retrieval_metrics(family: Family) -> list[str]:
    """The retrieval metrics (``<task>/hr@<k>``) in task order, then by k."""
    names = {m for v in family.variants for m in v.metrics}
    names |= {m for row in family.deltas.values() for m in row}
    order = {t: k for k, t in enumerate(family.tasks)}

    def k_of(metric: str) -> int:
        k = metric.rpartition("@")[2]
        return int(k) if k.isdigit() else 0

    return sorted(names, key=lambda m: (order.get(m.split("/")[0], len(order)), k_of(m), m))


def retrieval_hits(family: Family, key: str = "retrieval-hits") -> str | None:
    """Hit rate of every model per task and k, the sd over seeds as error bars."""
    if family.empty:
        return None
    metrics = retrieval_metrics(family)
    by_name = {v.name: v for v in family.variants}

    def values(metric: str, variant: str) -> Interval | None:
        s = by_name[variant].metrics.get(metric)
        if s is None or not finite(s.mean):
            return None
        sd = s.sd if finite(s.sd) else 0.0
        return Interval(s.mean, s.mean - sd, s.mean + sd)

    return _draw(key, "retrieval: hit rate per model", _bars_height(len(metrics) * len(by_name)),
                 lambda fig: _grouped_bars(fig, metrics, list(by_name), values, scale=100,
                                           tick=metric_label,
                                           title="Hit rate per model (± sd)",
                                           xlabel="hit rate, % of queries (higher is better)",
                                           zero_line=False))


def _estimable(i: Interval | None) -> bool:
    return i is not None and (i.control_hits is None or i.control_hits >= MIN_HITS)


def retrieval_deltas(family: Family, key: str = "retrieval-deltas") -> str | None:
    """Each treatment's relative HR delta over the control with its interval; a delta with
    fewer than MIN_HITS control hits per seed is marked not estimable, its hits named."""
    if not family.deltas:
        return None
    metrics = retrieval_metrics(family)

    def values(metric: str, variant: str) -> Interval | None:
        i = family.deltas[variant].get(metric)
        return i if _estimable(i) else None

    def note(metric: str, variant: str) -> str | None:
        i = family.deltas[variant].get(metric)
        if i is None or _estimable(i):
            return None
        return f"not estimable ({i.control_hits:.0f} hits)"

    return _draw(key, "retrieval: relative hit-rate delta over the control",
                 _bars_height(len(metrics) * len(family.deltas)),
                 lambda fig: _grouped_bars(fig, metrics, list(family.deltas), values,
                                           scale=100, tick=metric_label, note=note,
                                           title="Treatments against the control",
                                           xlabel="relative HR delta, % (higher is better)"))


def _positions(values: Sequence[Any], word_at: float | None) -> tuple[dict[Any, float], bool]:
    """x -> position on the axis, and whether the axis is logarithmic. Words (``"all"``)
    are drawn at ``word_at`` (the data's maximum) or one step past the largest number."""
    numbers = [float(v) for v in values if finite(v)]
    log = bool(numbers) and min(numbers) > 0 and max(numbers) / min(numbers) >= 20
    out: dict[Any, float] = {v: float(v) for v in values if finite(v)}
    words = [v for v in values if not finite(v)]
    top = max(numbers) if numbers else 0.0
    for k, word in enumerate(words, 1):
        if word_at is not None and word_at > top and k == 1:
            out[word] = word_at
        else:
            out[word] = top * 2 ** k if log else top + k * (
                (top - min(numbers)) / max(len(numbers) - 1, 1) if numbers else 1.0)
    return out, log


def _axis_label(metric: str, baseline: str | None) -> str:
    if not is_relative(metric):
        return metric_label(metric)
    against = f" vs {baseline}" if baseline else ""
    return f"relative delta{against}, %"


def _curve(fig: Figure, exp: Experiment, metric: str, word_at: float | None) -> None:
    ax = fig.add_subplot()
    axis = exp.axis
    xs = list(dict.fromkeys([*axis.values, *(p.x for p in exp.series if p.x is not None)]))
    where, log = _positions(xs, word_at)
    scale = 100 if is_relative(metric) else 1
    drawn = 0
    for a, arm in enumerate(exp.arms):
        points = sorted(((where[p.x], p.metrics[metric]) for p in exp.series
                         if p.arm == arm and p.x in where and metric in p.metrics
                         and finite(p.metrics[metric].estimate)), key=lambda t: t[0])
        if not points:
            continue
        colour = PALETTE[a % len(PALETTE)]
        label = next(p.label for p in exp.series if p.arm == arm)
        ax.plot([x for x, _ in points], [i.estimate * scale for _, i in points],
                color=colour, linewidth=1.8,
                marker=MARKERS[a % len(MARKERS)], markersize=5, label=_plain(label))
        band = [(x, i.estimate * scale, i.low * scale, i.high * scale) for x, i in points
                if finite(i.low) and finite(i.high)]
        if len(band) > 1:
            ax.fill_between([b[0] for b in band], [b[2] for b in band], [b[3] for b in band],
                            color=colour, alpha=0.18, linewidth=0)
        elif band:  # a band needs two points: one interval is an error bar
            x0, y0, low, high = band[0]
            ax.errorbar([x0], [y0], yerr=[[y0 - low], [high - y0]], color=colour, capsize=3)
        drawn += 1
    if log:
        ax.set_xscale("log")
    ticks = [_plain(value_text(v)) for v in xs]
    ax.set_xticks([where[v] for v in xs], ticks)
    ax.minorticks_off()
    if sum(len(t) + 2 for t in ticks) > 36:
        ax.tick_params(axis="x", labelrotation=45)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
    if is_relative(metric):
        ax.axhline(0, color="#333333", linewidth=0.9)
    direction = better(metric)
    ax.set_title(_literal(metric_label(metric)) + (f" ({direction} is better)" if direction
                                                   else ""))
    ax.set_xlabel(_wrapped(axis.label))
    ax.set_ylabel(_wrapped(_axis_label(metric, exp.baseline), 30))
    _legend(fig, ax, drawn)


def _delta_label(metrics: Sequence[str], against: str) -> str:
    directions = {better(m) for m in metrics}
    what = {frozenset({"lower"}): ("NE", " (lower is better)"),
            frozenset({"higher"}): ("HR", " (higher is better)")}.get(frozenset(directions),
                                                                      ("", ""))
    return f"relative {what[0]} delta{against}, %{what[1]}".replace("  ", " ")


def experiment_figures(exp: Experiment, key: str, word_at: float | None = None) -> list[str]:
    """The panels of any experiment, drawn from its generic shape.

    With an axis: one panel per metric, a curve per arm over x with its interval as a band.
    Without: grouped bars per metric and arm with intervals, relative deltas in one panel and
    every other metric in another. ``word_at`` is where an axis word (``"all"``) is drawn,
    e.g. the data's largest history length."""
    metrics = exp.metric_names
    if not metrics:
        return []
    if exp.axis is not None and any(p.x is not None for p in exp.series):
        return [_draw(f"{key}-{k}", f"{exp.title}: {metric_label(m)}", 3.6,
                      lambda fig, m=m: _curve(fig, exp, m, word_at))
                for k, m in enumerate(metrics)]
    labels = {p.arm: p.label for p in reversed(exp.series)}
    against = f" vs {exp.baseline}" if exp.baseline else ""
    panels = []
    for k, relative in enumerate((True, False)):
        names = [m for m in metrics if is_relative(m) == relative]
        if not names:
            continue

        def values(metric: str, arm: str) -> Interval | None:
            return next((p.metrics[metric] for p in exp.series
                         if p.arm == arm and metric in p.metrics), None)

        xlabel = _delta_label(names, against) if relative else "value"
        panels.append(_draw(
            f"{key}-{k}", f"{exp.title}: per arm", _bars_height(len(names) * len(exp.arms)),
            lambda fig, names=names, xlabel=xlabel, relative=relative: _grouped_bars(
                fig, names, exp.arms, values, scale=100 if relative else 1, xlabel=xlabel,
                tick=metric_label, legend=labels.get, zero_line=relative)))
    return panels


def history_lengths(summary: DataSummary, key: str = "data-history") -> str | None:
    """How many users have how many events: the data summary's histogram."""
    h = summary.histogram
    if h is None or not h.counts:
        return None

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        widths = [b - a for a, b in zip(h.edges, h.edges[1:])]
        ax.bar(h.edges[:-1], h.counts, width=widths, align="edge", color=PALETTE[0],
               edgecolor="white", linewidth=0.6)
        if h.log and h.edges[0] > 0:
            ax.set_xscale("log")
        for q, style in (("p50", "--"), ("p90", ":")):
            if q in summary.quantiles:
                ax.axvline(summary.quantiles[q], color=PALETTE[3], linestyle=style,
                           linewidth=1.4, label=f"{q} {summary.quantiles[q]:,.0f}")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.minorticks_off()
        ax.set_xlabel("events per user" + (" (log scale)" if h.log else ""))
        ax.set_ylabel("users")
        ax.set_title("History length")
        _legend(fig, ax, len(summary.quantiles.keys() & {"p50", "p90"}))

    return _draw(key, "history length: users per number of events", 3.4, draw)


def label_rates(summary: DataSummary, key: str = "data-labels") -> str | None:
    """The share of examples with a positive label, per binary task."""
    rates = {t: r for t, r in summary.label_rates.items() if finite(r)}
    if not rates:
        return None

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        names = list(rates)
        values = [100 * rates[t] for t in names]
        ax.barh(range(len(names)), values, color=PALETTE[2], height=0.7)
        ax.set_yticks(range(len(names)), [_plain(t) for t in names])
        ax.invert_yaxis()
        ax.grid(axis="y", visible=False)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.2f}%", va="center", ha="left", fontsize=11)
        ax.set_xlim(0, max(values) * 1.25 or 1)
        ax.set_xlabel("positive labels, % of examples")
        ax.set_title("Label rates")

    return _draw(key, "label rates per task", _bars_height(len(rates)), draw)
