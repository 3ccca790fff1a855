"""How the report spells metrics and numbers: one wording for its figures and its tables.

Deltas in a run directory are relative (``-0.003`` is ``-0.30%``); NE and MSE are better
lower, HR better higher. A metric the report has never heard of (``cosine``) is shown as the
plain value it is.
"""

from __future__ import annotations

import math
import re
from typing import Any

from dv365.report.run_dir import Interval, Spread

AVERAGE_NE = "average_binary_ne"
_LOWER = re.compile(r"(^|/)(ne|mse)$")
_HIGHER = re.compile(r"(^|/)hr@\d+$")


def better(metric: str) -> str | None:
    """``"lower"``, ``"higher"`` or ``None`` (not a known delta) for a metric name."""
    if metric == AVERAGE_NE or _LOWER.search(metric):
        return "lower"
    if _HIGHER.search(metric):
        return "higher"
    return None


def is_relative(metric: str) -> bool:
    """Whether the metric's values are relative deltas (drawn and written in percent)."""
    return better(metric) is not None


def metric_label(metric: str) -> str:
    """``like/ne`` -> ``like NE``, ``like/hr@10`` -> ``like HR@10``."""
    if metric == AVERAGE_NE:
        return "average NE"
    task, _, name = metric.rpartition("/")
    name = {"ne": "NE", "mse": "MSE"}.get(name, name.replace("hr@", "HR@"))
    return f"{task} {name}" if task else name


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def significant(i: Interval, direction: str | None) -> bool:
    """Whether the whole interval lies on the better side of zero."""
    if direction is None or not (finite(i.low) and finite(i.high)):
        return False
    return i.high < 0 if direction == "lower" else i.low > 0


def percent(value: float | None) -> str:
    return f"{100 * value:+.2f}%" if finite(value) else "-"


def interval_text(i: Interval, metric: str) -> str:
    """``-0.30% [-0.45, -0.15]`` for a relative delta, ``0.931 [0.92, 0.94]`` otherwise."""
    if not finite(i.estimate):
        return "-"
    if is_relative(metric):
        text = percent(i.estimate)
        if finite(i.low) and finite(i.high):
            text += f" [{100 * i.low:+.2f}, {100 * i.high:+.2f}]"
        return text
    text = f"{i.estimate:.4g}"
    if finite(i.low) and finite(i.high):
        text += f" [{i.low:.4g}, {i.high:.4g}]"
    return text


def mean_sd(s: Spread | None, digits: int = 4) -> str:
    """``0.9812 ± 0.0010`` (the sd left out when it is unknown)."""
    if s is None or not finite(s.mean):
        return "-"
    text = f"{s.mean:.{digits}f}"
    return text + f" ± {s.sd:.{digits}f}" if finite(s.sd) else text


def value_text(value: Any) -> str:
    """A table cell: integers with thousands separators, other numbers to 4 digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return ", ".join(value_text(v) for v in value) if isinstance(value, list) else \
            ", ".join(f"{k}: {value_text(v)}" for k, v in value.items())
    return str(value)
