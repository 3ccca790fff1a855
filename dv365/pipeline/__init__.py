"""The recurring pipeline: collect new data, retrain when due, export, verify, publish, gc.

One concept a module: ``config.py`` (the YAML config), ``state.py`` (the SQLite state
database of cycles and steps), ``collect.py`` (landed batches into the data folder),
``verify.py`` (a snapshot checked before it becomes current), ``steps.py`` (the six steps),
``cycle.py`` (one cycle, resumed where it stopped), ``schedule.py`` (cycles on a cadence).
See docs/pipeline.md.
"""
