"""fieldrelay: shared core (event model, settings, embedded Redis, CLI) used by receiver and workers."""

__version__ = "0.1.0"
