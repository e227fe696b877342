"""The ``wsss`` command line interface."""
