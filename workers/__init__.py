"""Celery app, tasks, pipeline logic, API connectors and the actions rules can call."""
