"""The ``sake-lens`` command line."""
