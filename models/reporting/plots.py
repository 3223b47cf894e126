"""Figures people would rather look at than tables. Pure: each returns a matplotlib Figure."""

import io

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import shap
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from models.risk.scenarios import abs_autocorrelations, window_correlation


def png_bytes(fig: Figure) -> bytes:
    """A figure as PNG bytes (110 dpi), the form every picture is stored and shown in."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def line_styles(names: list[str]) -> dict[str, dict]:
    """A colour for each name that no other name in the plot shares: tab10's ten, then tab20's
    lighter ten dashed (so a light and a dark blue also differ in style), then evenly spaced
    colours of a continuous map beyond twenty."""
    n = len(names)
    if n <= 20:
        tab20 = plt.get_cmap("tab20").colors
        colours = [*tab20[0::2], *tab20[1::2]][:n]
    else:
        colours = [plt.get_cmap("turbo")(x) for x in np.linspace(0.05, 0.95, n)]
    dashes = ["-", "--", "-.", ":"]
    return {
        name: {"color": colour, "linestyle": dashes[(i // 10) % len(dashes)]}
        for i, (name, colour) in enumerate(zip(names, colours, strict=True))
    }


def _legend_outside(ax, n: int) -> None:
    """The legend right of the axes, never over the data."""
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8 if n <= 16 else 7,
        ncol=1 if n <= 22 else 2,
        frameon=False,
    )


def _growth_axis(ax) -> None:
    """A log axis for growth of 1 that reads 0.5, 0.7, 1, 1.5, 2, 3 (not 3 × 10⁰)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=np.arange(1.0, 10.0)))
    ax.yaxis.set_minor_formatter(NullFormatter())


def equity_curves(
    daily: pl.DataFrame, title: str = "Out-of-sample equity (net of costs)"
) -> Figure:
    """Cumulative net growth of each strategy in ``[date, strategy, net]``, one colour each,
    on a log axis, the legend beside the plot."""
    parts = list(daily.sort("date").group_by("strategy", maintain_order=True))
    styles = line_styles([name for (name,), _ in parts])
    fig = Figure(figsize=(11, 4.8))
    ax = fig.subplots()
    for (name,), part in parts:
        wealth = np.cumprod(1 + part["net"].to_numpy())
        ax.plot(part["date"].to_numpy(), wealth, label=name, lw=1.2, **styles[name])
    ax.axhline(1.0, color="black", lw=0.6)
    _growth_axis(ax)
    ax.set(title=title, ylabel="growth of 1 (log scale)")
    ax.grid(alpha=0.3, which="major")
    _legend_outside(ax, len(parts))
    fig.tight_layout()
    return fig


def drawdown_curves(daily: pl.DataFrame) -> Figure:
    """Each strategy's drawdown from its running peak (net of costs), from ``[date, strategy,
    net]``, in the same colours as :func:`equity_curves`."""
    parts = list(daily.sort("date").group_by("strategy", maintain_order=True))
    styles = line_styles([name for (name,), _ in parts])
    fig = Figure(figsize=(11, 3.8))
    ax = fig.subplots()
    for (name,), part in parts:
        wealth = np.cumprod(1 + part["net"].to_numpy())
        drawdown = wealth / np.maximum.accumulate(wealth) - 1
        ax.plot(part["date"].to_numpy(), drawdown, label=name, lw=1.0, **styles[name])
    ax.set(title="Drawdown (net of costs)", ylabel="from peak")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.grid(alpha=0.3)
    _legend_outside(ax, len(parts))
    fig.tight_layout()
    return fig


def logit_histogram(logits: np.ndarray, pbo: float) -> Figure:
    """The CSCV logits of the in-sample winner's out-of-sample rank; the mass at or below zero
    is the probability of backtest overfitting."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.hist(logits, bins=40, color="tab:blue", alpha=0.8)
    ax.axvline(0, color="black", lw=1)
    ax.set(
        title=f"Probability of backtest overfitting: {pbo:.0%}",
        xlabel="logit of the in-sample best's out-of-sample rank",
        ylabel="splits",
    )
    fig.tight_layout()
    return fig


def ic_over_time(ic: pl.DataFrame, window: int = 63) -> Figure:
    """Daily Rank IC per model with its rolling mean, from ``[date, model, ic]``."""
    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    for (name,), part in ic.sort("date").group_by("model", maintain_order=True):
        ax.plot(
            part["date"].to_numpy(),
            part["ic"].rolling_mean(window, min_samples=5).to_numpy(),
            label=name,
        )
    ax.axhline(0, color="black", lw=0.8)
    ax.set(title=f"Out-of-fold Rank IC, {window}-day rolling mean", ylabel="Rank IC")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def var_backtest_plot(forecasts: pl.DataFrame, level: float, title: str = "") -> Figure:
    """Daily returns against each method's rolling one-day VaR at ``level``, exceptions marked;
    from ``[date, method, level, ret, var, exception]`` (one panel per method)."""
    chosen = forecasts.filter(pl.col("level") == level).sort("date")
    methods = chosen["method"].unique(maintain_order=True).to_list()
    fig = Figure(figsize=(10, 1.9 * len(methods) + 0.6))
    axes = np.atleast_1d(fig.subplots(len(methods), 1, sharex=True, sharey=True))
    for ax, method in zip(axes, methods, strict=True):
        part = chosen.filter(pl.col("method") == method)
        dates, ret, var = (part[c].to_numpy() for c in ("date", "ret", "var"))
        hits = part["exception"].to_numpy()
        ax.plot(dates, ret, lw=0.5, color="grey")
        ax.plot(dates, -var, lw=0.9, color="tab:blue")
        ax.scatter(dates[hits], ret[hits], s=9, color="tab:red", zorder=3)
        ax.set_title(
            f"{method}: {hits.sum()} exceptions in {len(hits)} days "
            f"(expected {len(hits) * (1 - level):.1f})",
            fontsize=9,
            loc="left",
        )
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"Daily returns vs rolling {level:.0%} VaR (red: exceptions)")
    fig.tight_layout()
    return fig


def shap_summary(explanation: shap.Explanation, max_display: int = 15) -> Figure:
    """SHAP beeswarm summary (shap draws on pyplot's current figure)."""
    plt.close("all")
    # the beeswarm breaks ties with numpy's global generator: seeded here (and restored), the
    # same explanation draws the same picture from run to run
    state = np.random.get_state()  # noqa: NPY002 (shap reads the legacy global generator)
    np.random.seed(0)  # noqa: NPY002
    try:
        shap.plots.beeswarm(explanation, max_display=max_display, show=False)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    fig = plt.gcf()
    fig.set_size_inches(9, 6)
    fig.tight_layout()
    plt.close(fig)
    return fig


def shap_dependence(explanation: shap.Explanation, features: list[str]) -> Figure:
    """SHAP dependence: each feature's value against its SHAP value, one panel per feature."""
    fig = Figure(figsize=(4 * len(features), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(features)))
    names = list(explanation.feature_names)
    for ax, feature in zip(axes, features, strict=True):
        j = names.index(feature)
        ax.scatter(explanation.data[:, j], explanation.values[:, j], s=4, alpha=0.4)
        ax.axhline(0, color="grey", lw=0.6)
        ax.set(xlabel=feature, ylabel="SHAP value")
        ax.grid(alpha=0.3)
    fig.suptitle("SHAP dependence of the top features")
    fig.tight_layout()
    return fig


def scenario_realism(real: np.ndarray, generated: np.ndarray, source: str) -> Figure:
    """Real against generated windows: the return distribution (log density), the
    autocorrelation of |r| (volatility clustering) and both correlation matrices."""
    fig = Figure(figsize=(13, 3.6))
    ax_hist, ax_acf, ax_real, ax_gen = fig.subplots(1, 4)
    r, g = real.ravel(), generated.ravel()
    bins = np.linspace(np.quantile(r, 0.0005), np.quantile(r, 0.9995), 80)
    for data, label in ((r, "real"), (g, source)):
        ax_hist.hist(data, bins=bins, density=True, histtype="step", label=label)
    ax_hist.set(yscale="log", title="daily returns (log density)")
    ax_hist.legend(fontsize=8)
    lags = min(real.shape[1] - 1, 10)
    for data, label in ((real, "real"), (generated, source)):
        ax_acf.plot(range(1, lags + 1), abs_autocorrelations(data, lags), marker="o", label=label)
    ax_acf.set(title="autocorrelation of |r|", xlabel="lag (days)")
    ax_acf.legend(fontsize=8)
    for ax, data, label in ((ax_real, real, "real"), (ax_gen, generated, source)):
        ax.imshow(window_correlation(data), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set(title=f"correlation: {label}", xticks=[], yticks=[])
    fig.tight_layout()
    return fig


def correlation_map(returns: pl.DataFrame) -> Figure:
    """Correlation heat-map of the columns of a wide returns table (``date`` excluded)."""
    wide = returns.drop("date")
    corr = np.corrcoef(np.nan_to_num(wide.to_numpy()), rowvar=False)
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(wide.columns)), wide.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(len(wide.columns)), wide.columns, fontsize=7)
    fig.colorbar(im, ax=ax)
    ax.set_title("Correlation of daily returns (holdings)")
    fig.tight_layout()
    return fig


def correlation_change(
    symbols: list[str], now: np.ndarray, before: np.ndarray, label: str
) -> Figure:
    """The forecast correlation of the holdings now, and its change since the previous block."""
    fig = Figure(figsize=(12, 5))
    ax_now, ax_diff = fig.subplots(1, 2)
    for ax, matrix, title, limit in (
        (ax_now, now, f"{label} correlation forecast, next block", 1.0),
        (ax_diff, now - before, "change since the previous block", 0.5),
    ):
        im = ax.imshow(matrix, vmin=-limit, vmax=limit, cmap="RdBu_r")
        ax.set_xticks(range(len(symbols)), symbols, rotation=90, fontsize=7)
        ax.set_yticks(range(len(symbols)), symbols, fontsize=7)
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def cumulative_long_short(ls: pl.DataFrame, horizon: int = 5) -> Figure:
    """Cumulative top-minus-bottom-quintile label per model from ``[date, model, ls]``.

    Each date's ``ls`` is an ``horizon``-day return; summing every ``horizon``-th date gives a
    non-overlapping cumulative long-short return."""
    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    for (name,), part in ls.sort("date").group_by("model", maintain_order=True):
        part = part.gather_every(max(horizon, 1))
        ax.plot(part["date"].to_numpy(), np.cumsum(part["ls"].to_numpy()), label=name)
    ax.axhline(0, color="black", lw=0.8)
    ax.set(title="Out-of-fold long-short (top minus bottom quintile), cumulative", ylabel="return")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def optimisation_history(values: list[float | None], title: str) -> Figure:
    """Each Optuna trial's score (pruned or failed trials absent) and the best so far."""
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    x = np.arange(len(values))
    y = np.array([np.nan if v is None else v for v in values], dtype=float)
    ax.scatter(x, y, s=14, label="trial")
    best = np.fmax.accumulate(np.where(np.isnan(y), -np.inf, y))
    ax.step(x, np.where(np.isinf(best), np.nan, best), where="post", color="C3", label="best")
    ax.set(title=title, xlabel="trial", ylabel="mean fold Rank IC")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def parameter_importance(importance: dict[str, float], title: str) -> Figure:
    """Horizontal bars of hyper-parameter importances (Optuna's fANOVA evaluator)."""
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    names = list(importance)[::-1]
    ax.barh(names, [importance[n] for n in names])
    ax.set(title=title, xlabel="importance")
    fig.tight_layout()
    return fig


def cluster_exposure_map(exposure: pl.DataFrame) -> Figure:
    """Strategies x clusters heat-map of the mean net weight, from ``[strategy, cluster,
    net]`` (see ``models.portfolio.cluster_exposure``)."""
    wide = exposure.pivot(on="cluster", index="strategy", values="net", sort_columns=True)
    wide = wide.fill_null(0.0).sort("strategy")
    matrix = wide.drop("strategy").to_numpy()
    limit = max(float(np.abs(matrix).max()), 1e-9)
    fig = Figure(figsize=(1.2 + 0.9 * matrix.shape[1], 0.8 + 0.4 * len(wide)))
    ax = fig.subplots()
    im = ax.imshow(matrix, vmin=-limit, vmax=limit, cmap="RdBu_r", aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), [f"cluster {c}" for c in wide.columns[1:]])
    ax.set_yticks(range(len(wide)), wide["strategy"].to_list(), fontsize=8)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax)
    ax.set_title("Mean net weight per correlation cluster")
    fig.tight_layout()
    return fig


def selection_vs_holdout(selection: np.ndarray, holdout: np.ndarray) -> Figure:
    """Each search candidate's Sharpe ratio on the window it was selected on against the
    hold-out after it: a search that learnt something leaves a rising cloud, an overfit one a
    flat or falling one."""
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    ax.scatter(selection, holdout, s=18, alpha=0.7)
    if len(selection):
        ax.scatter(selection[:1], holdout[:1], s=60, color="C3", label="selected")
        ax.legend()
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set(
        xlabel="net Sharpe, selection window",
        ylabel="net Sharpe, hold-out",
        title="Genetic search: selection vs hold-out",
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def universe_counts(counts: pl.DataFrame) -> Figure:
    """Symbols in the panel and in the investable universe per date, from ``[date, listed,
    eligible]``."""
    fig = Figure(figsize=(9, 3.5))
    ax = fig.subplots()
    dates = counts["date"].to_numpy()
    ax.plot(dates, counts["listed"].to_numpy(), color="0.6", lw=1, label="in the panel")
    ax.plot(dates, counts["eligible"].to_numpy(), lw=1.2, label="investable (screened)")
    ax.set(title="Investable universe per date", ylabel="symbols")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
