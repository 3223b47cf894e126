"""Thin Dagster assets, one module per group. Each reads its inputs, calls ``models/`` and
attaches metadata; ``pipelines/definitions.py`` wires them together."""
