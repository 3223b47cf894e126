"""What the columns of our frames and tables mean, and how to show them to a person (pure).

One registry of column names: a description, a unit and a display kind. The Dagster metadata
tables (``assets/_meta.py``), the HTML run report (``models/reporting/html.py``) and the frames' column
schemas all read it, so ``annual_return`` reads "23.56" under "annual_return (%)" everywhere,
with the same description. Only what is *shown* is converted and rounded: the lake and the
MLflow metrics keep the raw fractions.

A name not in the registry gets a sensible default from its shape (``*_return`` a percent,
``*_ratio`` a ratio, ``*_p`` a p-value, ``n_*`` a count, ...), then from its dtype, so a table
with new columns shows readably before anyone describes them here.
"""

import re
from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Kind:
    """How a kind of figure is shown: multiplied by ``scale``, rounded to ``digits`` decimals
    (``significant``: to that many significant digits; None: an integer), the ``unit`` after
    the column's name."""

    scale: float = 1.0
    digits: int | None = 4
    unit: str = ""
    significant: bool = False


KINDS: dict[str, Kind] = {
    "percent": Kind(100.0, 2, "%"),  # a fraction shown as a percentage
    "prob": Kind(100.0, 1, "%"),  # a probability shown as a percentage
    "bp": Kind(1e4, 1, "bp"),  # a fraction shown in basis points
    "ratio": Kind(1.0, 2),  # Sharpe, Sortino, Calmar, beta
    "multiple": Kind(1.0, 1, "×"),  # turnover: times the book per year
    "ic": Kind(1.0, 4),  # correlations and information coefficients
    "p_value": Kind(1.0, 3),
    "stat": Kind(1.0, 2),  # test statistics, expected counts
    "int": Kind(1.0, None),
    "days": Kind(1.0, None, "days"),
    "seconds": Kind(1.0, 2, "s"),
    "float": Kind(1.0, 4, significant=True),
    "text": Kind(1.0, None),
}


@dataclass(frozen=True)
class Column:
    """A known column: its ``kind`` (a key of :data:`KINDS`), what it means, and whether it is
    one figure for a whole table (shown once, above or beside it, not on every row)."""

    kind: str
    description: str
    per_table: bool = False


_KEYS = {
    "symbol": ("text", "Ticker."),
    "date": ("text", "Trading day."),
    "strategy": ("text", "Book or strategy name (variants carry their parameters in brackets)."),
    "model": ("text", "Model name."),
    "method": ("text", "Estimation method."),
    "feature": ("text", "Feature name (see the feature registry)."),
    "description": ("text", "What it is."),
    "rule": ("text", "The data rule a row broke."),
    "sector": ("text", "GICS sector."),
    "series": ("text", "Alternative-data series."),
    "kind": ("text", "Which kind of row."),
    "episode": ("text", "Historical stress episode."),
    "shock": ("text", "Hypothetical shock applied to the book."),
    "zone": ("text", "Basel traffic-light zone of the last 250 days' exceptions."),
    "note": ("text", "Why a figure is missing or approximate."),
    "source": ("text", "Where the figures come from."),
    "study": ("text", "Optuna study name (resumable in Optuna storage)."),
    "action": ("text", "DQN action: which book, or cash."),
    "candidate": ("text", "Genetic-search candidate."),
}

_STRATEGY = {
    "annual_return": ("percent", "Annual return (CAGR) net of every cost, out of sample."),
    "annual_return_gross": ("percent", "Annual return (CAGR) before costs, out of sample."),
    "cost_drag": ("percent", "Annual return lost to commissions, spread, impact and borrow."),
    "total_return": ("percent", "Cumulative net return over the out-of-sample period."),
    "annual_volatility": ("percent", "Annualised standard deviation of daily net returns."),
    "sharpe": ("ratio", "Annualised Sharpe ratio of net returns (risk-free rate 0)."),
    "sharpe_gross": ("ratio", "Annualised Sharpe ratio before costs."),
    "sortino": ("ratio", "Annualised Sortino ratio of net returns (downside deviation)."),
    "calmar": ("ratio", "Annual net return over the maximum drawdown."),
    "max_drawdown": ("percent", "Worst fall from a running peak of net wealth."),
    "max_drawdown_days": ("days", "Longest stretch under a previous peak, in trading days."),
    "annual_turnover": ("multiple", "Traded value per year as a multiple of the book."),
    "hit_rate": ("percent", "Share of days with a positive net return."),
    "psr": ("prob", "Probabilistic Sharpe ratio: probability that the true Sharpe exceeds 0."),
    "dsr": (
        "prob",
        "Deflated Sharpe ratio: the PSR against the best Sharpe expected from this many "
        "trials by luck alone (95 % or more is significant).",
    ),
    "pbo": (
        "prob",
        "Probability of backtest overfitting (CSCV): how often the in-sample best strategy "
        "ranks below the median out of sample. One figure for the whole search.",
    ),
    "n_trials": ("int", "Trials the deflated Sharpe ratio counts (strategies, variants, Optuna)."),
    "n_days": ("days", "Trading days in the out-of-sample period."),
    "excess_return": (
        "percent",
        "Annualised mean daily net return above the benchmark book's net return.",
    ),
    "excess_return_gross": (
        "percent",
        "Annualised mean daily return above the benchmark book's, both before costs.",
    ),
    "tracking_error": ("percent", "Annualised volatility of the return above the benchmark."),
    "information_ratio": ("ratio", "Net excess return over its tracking error, annualised."),
    "information_ratio_gross": (
        "ratio",
        "Excess return before costs over its tracking error, annualised.",
    ),
}

_SIGNAL = {
    "rank_ic": ("ic", "Mean daily Spearman correlation of prediction and label (Rank IC)."),
    "ic": ("ic", "Mean daily Pearson correlation of prediction and label."),
    "rank_icir": ("ratio", "Mean daily Rank IC over its standard deviation."),
    "rank_ic_t": ("stat", "t-statistic of the mean daily Rank IC (Newey-West free, iid days)."),
    "cv_rank_ic": ("ic", "Best Optuna trial's mean Rank IC over the tuning folds."),
    "mean_rank_ic": ("ic", "Mean Rank IC over the tuning folds."),
    "long_short": ("percent", "Mean label return of the top minus the bottom quintile."),
    "n_dates": ("int", "Days scored."),
    "mean_abs_shap": ("float", "Mean absolute SHAP value (the model's output units)."),
    "prediction": ("float", "The model's score."),
    "score": ("float", "Score (higher: more of it)."),
    "label": ("float", "Forward return label."),
    "weight": ("percent", "Portfolio weight, a share of capital (negative: short)."),
    "gross": ("percent", "Gross exposure (sum of absolute weights), or the return before costs."),
    "net": ("percent", "Net exposure (sum of weights), or the return after costs."),
    "cluster": ("int", "Correlation cluster."),
    "window": ("days", "Look-back window."),
    "fold": ("int", "Walk-forward fold."),
}

_RISK = {
    "level": ("percent", "Confidence level."),
    "horizon_days": ("days", "Horizon."),
    "var": ("percent", "Value at risk: the loss not exceeded at this level (of book value)."),
    "es": ("percent", "Expected shortfall: the mean loss beyond the VaR (of book value)."),
    "worst_loss": ("percent", "Worst simulated loss."),
    "days": ("days", "Days forecast."),
    "exceptions": ("int", "Days whose loss exceeded the VaR forecast."),
    "expected": ("float", "Exceptions expected at this level: days x (1 - level)."),
    "rate": ("percent", "Exceptions per day."),
    "last_250_exceptions": ("int", "Exceptions in the last 250 days (the Basel window)."),
    "kupiec_lr": ("stat", "Kupiec's likelihood ratio (unconditional coverage)."),
    "kupiec_p": ("p_value", "Kupiec test p-value: is the exception rate the expected one?"),
    "independence_lr": ("stat", "Christoffersen's independence likelihood ratio."),
    "independence_p": ("p_value", "Christoffersen test p-value: are exceptions independent?"),
    "conditional_lr": ("stat", "Christoffersen's conditional coverage likelihood ratio."),
    "conditional_p": ("p_value", "Conditional coverage p-value (rate and independence)."),
    "portfolio_return": ("percent", "The book's return through the episode or shock."),
    "benchmark_return": ("percent", "The market's return through the episode."),
    "coverage": ("percent", "Share of the book (or of the scenarios) the figure covers."),
    "mse": ("float", "Mean squared error of the off-diagonal correlations (lower is better)."),
    "vs_rolling": ("ratio", "MSE relative to the rolling-window forecast (below 1: better)."),
    "blocks": ("int", "Forecast blocks scored."),
    "beta": ("ratio", "Hedge ratio."),
    "p_value": ("p_value", "Test p-value."),
    "share": ("percent", "Share of decisions."),
    "seconds": ("seconds", "Wall-clock time."),
    "len": ("int", "Rows."),
    "rows": ("int", "Rows."),
    "source_row": ("int", "Row of the source file (1 = the first data row)."),
}

COLUMNS: dict[str, Column] = {
    name: Column(kind, text, per_table=name in ("pbo", "n_trials"))
    for group in (_KEYS, _STRATEGY, _SIGNAL, _RISK)
    for name, (kind, text) in group.items()
}

# The shape of a name, for columns nobody has described yet (first match wins).
_PATTERNS: tuple[tuple[re.Pattern, str, str], ...] = (
    (re.compile(r"(^|_)(p|pvalue|p_value)$"), "p_value", "A test p-value."),
    (re.compile(r"(^|_)(t|tstat|t_stat)$"), "stat", "A t-statistic."),
    (re.compile(r"(^|_)(days|horizon)$"), "days", "Trading days."),
    (re.compile(r"^n_|_count$|^count$"), "int", "A count."),
    (re.compile(r"_bps?$"), "float", "Basis points."),
    (re.compile(r"(^|_)seconds$|_s$"), "seconds", "Seconds."),
    (re.compile(r"(sharpe|sortino|calmar|ratio|icir)"), "ratio", "A ratio."),
    (re.compile(r"(^|_)(rank_ic|ic)(_|$)"), "ic", "An information coefficient."),
    (
        re.compile(r"(return|volatility|drawdown|tracking_error|hit_rate|share|weight)"),
        "percent",
        "A fraction, shown in percent.",
    ),
)


def describe(name: str, dtype: pl.DataType | None = None) -> Column:
    """The registered column, or a default guessed from the name's shape, then its dtype."""
    if name in COLUMNS:
        return COLUMNS[name]
    for pattern, kind, text in _PATTERNS:
        if pattern.search(name):
            if kind != "text" and dtype is not None and not dtype.is_numeric():
                break
            return Column(kind, text)
    if dtype is not None and dtype.is_integer():
        return Column("int", "")
    if dtype is not None and dtype.is_float():
        return Column("float", "")
    return Column("text", "")


def heading(name: str, column: Column) -> str:
    """The column's name as shown, with its unit: ``annual_return (%)``."""
    unit = KINDS[column.kind].unit
    return f"{name} ({unit})" if unit and not name.endswith(unit) else name


def _shown(name: str, dtype: pl.DataType, column: Column) -> pl.Expr:
    """The column as a person reads it: scaled and rounded, integers as integers, NaN and inf
    as null; dates and anything else not numeric as text."""
    kind = KINDS[column.kind]
    if dtype == pl.Boolean:
        return pl.col(name)
    if not dtype.is_numeric() or column.kind == "text":
        return pl.col(name).cast(pl.String)
    x = pl.col(name).cast(pl.Float64)
    x = pl.when(x.is_finite()).then(x * kind.scale)
    if kind.digits is None:
        return x.round(0).cast(pl.Int64).alias(name)
    if kind.significant:
        return x.round_sig_figs(kind.digits).alias(name)
    return x.round(kind.digits).alias(name)


def cell(value, column: Column) -> str:
    """A shown value as text with its decimals kept (``12.50``, not ``12.5``); null as empty."""
    kind = KINDS[column.kind]
    if value is None:
        return ""
    if isinstance(value, float) and kind.digits is not None and not kind.significant:
        return f"{value:,.{kind.digits}f}"
    if isinstance(value, float):
        return f"{value:,.{kind.digits}g}" if abs(value) < 1e6 else f"{value:.{kind.digits}g}"
    return str(value)


@dataclass(frozen=True)
class Display:
    """A frame ready to show. ``raw`` the columns shown, unconverted (for sorting); ``shown``
    the same as a person reads them; ``columns`` the (name, heading, Column) of each; ``once``
    the per-table figures that were the same on every row, as (name, Column, shown value)."""

    raw: pl.DataFrame
    shown: pl.DataFrame
    columns: list[tuple[str, str, Column]]
    once: list[tuple[str, Column, object]]


def display(frame: pl.DataFrame) -> Display:
    """Describe every column, convert it for people, and split off the per-table figures (one
    value on every row)."""
    columns, once = [], []
    exprs = {}
    for name, dtype in frame.schema.items():
        column = describe(name, dtype)
        exprs[name] = _shown(name, dtype, column)
        if column.per_table and frame.height and frame[name].n_unique() == 1:
            once.append((name, column, None))
            continue
        columns.append((name, heading(name, column), column))
    converted = frame.select(exprs.values()) if exprs else frame
    once = [(n, c, converted[n][0]) for n, c, _ in once]
    names = [c[0] for c in columns]
    return Display(frame.select(names), converted.select(names), columns, once)


def once_text(once: list[tuple[str, Column, object]]) -> str:
    """``pbo 60.7 % · n_trials 57``: the per-table figures on one line."""
    parts = []
    for name, column, value in once:
        unit = KINDS[column.kind].unit
        parts.append(f"{name} {cell(value, column)}{' ' + unit if unit else ''}")
    return " · ".join(parts)
