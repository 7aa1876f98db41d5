"""Recommendations: savings findings, their groups and lifecycle."""
