"""``dv365 pipeline run CONFIG``, killed with SIGKILL at one chosen point (a test helper).

    python -m tests.cli.killed_pipeline POINT CONFIG

POINT: ``train`` (after the first checkpoint the run writes), ``export-shard`` (after the
second shard of the export is written), or a step's name (after the step did its work,
before the state database records it: the worst moment for a step that publishes).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

from dv365.cli.app import main
from dv365.pipeline.state import PipelineState

job = importlib.import_module("dv365.export.job")
train = importlib.import_module("dv365.model.train")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    if point == "train":
        save = train.save_checkpoint

        def save_then_die(*args, **kwargs):
            path = save(*args, **kwargs)
            if not kwargs.get("best"):
                _die()
            return path

        train.save_checkpoint = save_then_die
    elif point == "export-shard":
        write = job._Writer._write

        def write_then_die(self, index, *args):
            write(self, index, *args)
            if index >= 1:
                _die()

        job._Writer._write = write_then_die
    else:
        finish = PipelineState.finish_step

        def die_before_recording(self, cycle, name, outputs, **kwargs):
            if name == point:
                _die()
            finish(self, cycle, name, outputs, **kwargs)

        PipelineState.finish_step = die_before_recording


if __name__ == "__main__":
    arm(sys.argv[1])
    sys.exit(main(["pipeline", "run", sys.argv[2]]))
