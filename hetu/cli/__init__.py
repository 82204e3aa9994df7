"""The ``hetu`` command line."""
