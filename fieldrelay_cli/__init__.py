"""The `fieldrelay` command line and the process entry points: the top floor, which assembles the rest."""
