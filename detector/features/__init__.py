"""Per-account, per-window features: the table rules and the model both read."""
