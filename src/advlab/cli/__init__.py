"""The ``advlab`` command line (nothing in the library imports this package)."""
