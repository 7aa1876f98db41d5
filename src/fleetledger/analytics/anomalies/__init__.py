"""Anomalies: detection, root causes and their lifecycle."""
