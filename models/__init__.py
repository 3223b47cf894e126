"""Pure library code for AlphaForge: no Dagster, no MLflow, no environment variables, no I/O.

Every function takes frames and arrays in and gives frames, arrays or fitted estimators back, so
the same code serves the Dagster assets, the notebooks and the tests.
"""
