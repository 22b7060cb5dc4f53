"""Polling sources: change events from ServiceTrade, Synchroteam and Synergist lists, without webhooks."""
