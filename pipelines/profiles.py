"""Named run-config sets. ``full`` is the nightly job (the config classes' defaults); ``fast`` is
the first run and the test suite: sixteen years of history, few trials, few folds."""

from typing import Any

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {},
    "fast": {
        "market_prices": {"start_date": "2007-01-01"},
        "base_models": {"n_trials": 10, "inner_splits": 3},
        "oof_predictions": {"outer_splits": 4},
        "shap_explanations": {"n_rows": 500},
    },
}


def run_config(profile: str) -> dict[str, Any]:
    """Dagster run config (``{"ops": {asset: {"config": {...}}}}``) for a profile."""
    try:
        ops = PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown profile {profile!r}; known: {sorted(PROFILES)}") from None
    return {"ops": {asset: {"config": dict(values)} for asset, values in ops.items()}}
