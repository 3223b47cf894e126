"""Data contracts: versioned Great Expectations suites (``suites/*.json``) and the parsers
that turn raw user files into typed frames, naming the file, column and row of every problem.

No Dagster and no MLflow here; ``assets/`` wraps these as blocking asset checks.
"""

from data_contracts.prices import (
    PRICE_COLUMNS,
    CheckedPrices,
    RawPrices,
    check_prices,
    parse_prices,
)
from data_contracts.suite import ContractViolation, Report, Violation, run_suite, validate

__all__ = [
    "PRICE_COLUMNS",
    "CheckedPrices",
    "ContractViolation",
    "RawPrices",
    "Report",
    "Violation",
    "check_prices",
    "parse_prices",
    "run_suite",
    "validate",
]
