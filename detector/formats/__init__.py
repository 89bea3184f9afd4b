"""Other formats in and out: readers for NDJSON, CSV and Parquet, field mappings (ECS,
OCSF, a user's TOML) onto the contract, and staging as contract Parquet.

See docs/formats.md. The pipeline itself only ever reads contract Parquet:
:func:`detector.formats.staging.contract_log` gives it that.
"""
