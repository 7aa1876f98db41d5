"""Readers of provider cost and usage reports and invoices, as provider lines."""
