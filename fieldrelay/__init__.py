"""fieldrelay's ground floor: the event model, settings, queue names and messages, the pipeline's state in
Redis with its queries and operations, trace steps, targets, metrics, logs and redaction. It imports
nothing else of the project; `rules`, `receiver`, `workers` and `fieldrelay_cli` stand on it."""

__version__ = "0.1.0"
