"""Ingest: the durable writer and its journal, files, OTLP, provider response readers, importers."""
