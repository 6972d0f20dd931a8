"""The ``lfmrt`` command line (see :mod:`lfmrt.cli.main`)."""
