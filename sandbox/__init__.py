"""Stateful local simulators of the ServiceTrade, Synchroteam and Synergist APIs."""
