"""The rule language: models, loader, conditions, templating, evaluation. Pure: no network I/O."""
