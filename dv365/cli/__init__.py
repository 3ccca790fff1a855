"""The ``dv365`` command line: one module per command group, assembled in :mod:`.app`."""
