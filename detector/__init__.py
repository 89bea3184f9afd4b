"""Per-account anomaly detection over access logs (see README.md and docs/)."""

__version__ = "0.1.0"
