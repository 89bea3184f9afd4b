"""The rule sets shipped with the detector: one TOML file each (see docs/rules.md)."""
