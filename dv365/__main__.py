"""``python -m dv365``: the ``dv365`` command line."""

from dv365.cli.app import run

if __name__ == "__main__":
    run()
