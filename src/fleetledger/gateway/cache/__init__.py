"""The gateway's response cache: exact and semantic."""
