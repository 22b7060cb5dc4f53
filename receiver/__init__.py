"""Starlette receiver: ServiceTrade webhooks in, normalized change events out to the Celery queue."""
