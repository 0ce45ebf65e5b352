"""The Dagster code location and the domain rules it owns: formats, keys, pipelines."""
