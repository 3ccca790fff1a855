"""The report stage: one self-contained HTML page of what a ``dv365 eval`` run directory holds.

:mod:`dv365.report.run_dir` reads the run directory (docs/report.md names its files) into
typed values, every file optional: what is absent or damaged becomes a named missing part, so
a partial or interrupted run still gets its report. :mod:`dv365.report.figures` draws them as
inline SVG, :mod:`dv365.report.numbers` spells their numbers, and :mod:`dv365.report.page`
assembles the page. The stage reads only the run directory: never the data folder, never a
model.
"""
