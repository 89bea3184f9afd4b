"""Synthetic access logs for a public employment information system, with replayed attacks."""
