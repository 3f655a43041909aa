"""The ``tally`` command."""
