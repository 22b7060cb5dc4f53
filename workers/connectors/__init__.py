"""HTTP clients for ServiceTrade, Synchroteam and Synergist, built on httpx with typed errors."""
