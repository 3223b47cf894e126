"""The run report's content: its sections (strategies and their honesty figures, the investable
universe, VaR and its backtest, stress tests, generated scenarios, dynamic correlation, SHAP
explanations, and the order books where the run had them), rendered by ``models/reporting/html.py``."""

import io

import polars as pl

from models.data.universe import excluded_symbols
from models.microstructure.impact import IMPACT_COLUMNS
from models.reporting.html import Figure, Section
from models.reporting.plots import equity_curves, png_bytes, universe_counts, var_backtest_plot
from models.risk.var_backtest import coverage_table

# the pictures other assets store that the report shows (besides the order books' lob_*.png)
STORED_FIGURES = (
    "scenario_realism.png",
    "correlation_forecast.png",
    "shap_summary.png",
    "shap_dependence.png",
)


def run_report_sections(
    backtest: pl.DataFrame,
    strategy_table: pl.DataFrame,
    var_backtest: pl.DataFrame,
    risk_report: dict,
    shap_explanations: pl.DataFrame,
    stress_scenarios: dict,
    correlation_forecasts: pl.DataFrame,
    universe: pl.DataFrame,
    figures: dict[str, bytes],
    lob_models: bytes | None = None,
    lob_impact: bytes | None = None,
) -> list[Section]:
    """The report's sections from the run's results; ``figures``: the stored pictures by file
    name (one never written is left out); ``lob_models`` / ``lob_impact``: the order-book
    group's JSON, None where it did not run."""
    strategies = backtest.filter(pl.col("role") == "strategy")
    levels = sorted(var_backtest["level"].unique())
    counts = (
        universe.group_by("date")
        .agg(eligible=pl.col("eligible").sum(), listed=pl.len())
        .sort("date")
    )
    excluded = excluded_symbols(universe)
    sections = [
        Section(
            "Strategies",
            (
                "Out-of-sample, net of commissions, spread, market impact and borrowing. "
                "The deflated Sharpe ratio accounts for every trial run; PBO is the "
                "probability that the in-sample best is below the median out of sample.",
                strategy_table,
                Figure(png_bytes(equity_curves(strategies)), "Equity curves, net of costs"),
            ),
        ),
        Section(
            "Investable universe",
            (
                "Models train and books trade only on the screened universe (minimum price, "
                "median dollar volume, history, stale runs, open blocking quality findings, "
                "market-wide stale days); each symbol it excluded beyond its first days, with "
                "the rules and the first reason.",
                Figure(png_bytes(universe_counts(counts)), "Investable symbols per date"),
                excluded if len(excluded) else "No symbol was excluded beyond its first days.",
            ),
        ),
        Section(
            "VaR backtest",
            (
                "Each method forecasts tomorrow's VaR from a rolling window of past net "
                "returns only; exceptions are days the loss exceeded it. Kupiec tests the "
                "exception rate, Christoffersen their independence; the Basel zone counts the "
                "last 250 days.",
                coverage_table(var_backtest),
                *(
                    Figure(png_bytes(var_backtest_plot(var_backtest, lv)), f"{lv:.0%} VaR")
                    for lv in levels
                ),
            ),
        ),
        Section(
            "Value at risk and expected shortfall",
            (
                "Losses as fractions of value, from each strategy's whole out-of-sample history.",
                risk_report["var"],
            ),
        ),
        Section(
            "Stress tests",
            (
                "Today's book replayed through historical episodes (null: outside the data).",
                risk_report["stress"],
                "Hypothetical shocks through the book's exposures (returns; a loss is negative).",
                risk_report["shocks"],
            ),
        ),
        Section(
            "Generated scenarios",
            (
                f"Monte Carlo over generated scenarios: {risk_report['scenario_source']}.",
                risk_report["scenario_var"],
                "The GAN's realism checks against the real windows:",
                stress_scenarios["checks"],
                *_figures(figures, {"scenario_realism.png": "Real against generated windows"}),
            ),
        ),
        Section(
            "Dynamic correlation",
            (
                "The holdings' correlation forecast block by block out of sample; mse of the "
                "off-diagonal entries against the realised correlation (lower is better).",
                correlation_forecasts,
                *_figures(
                    figures, {"correlation_forecast.png": "DCC correlation forecast and its change"}
                ),
            ),
        ),
        Section(
            "Explanations",
            (
                "SHAP values of the explained model on the latest rows (exact TreeSHAP for "
                "tree models, expected gradients for nets); features described from the "
                "feature registry.",
                shap_explanations.head(20),
                *_figures(
                    figures,
                    {
                        "shap_summary.png": "SHAP summary (beeswarm) of the explained model",
                        "shap_dependence.png": "SHAP dependence of the top features",
                    },
                ),
            ),
        ),
    ]
    return sections + _microstructure(figures, lob_models, lob_impact)


def _microstructure(
    figures: dict[str, bytes], lob_models: bytes | None, lob_impact: bytes | None
) -> list[Section]:
    """The order-book results the microstructure group left (its latest run's scores and
    costs, as JSON, and its pictures), or nothing when it never ran (no ``data.lob``)."""
    models, costs = lob_models, lob_impact
    if models is None and costs is None:
        return []
    blocks: list = [
        "Order books (LOBSTER), ingested under the lob_book contract. Models: trained on the "
        "first part of the trading time, tested on the rest, purged by each label's horizon."
    ]
    if models is not None:
        scores = pl.read_json(io.BytesIO(models))
        blocks.append(scores.select("symbol", "model", "horizon", "accuracy", "macro_f1", "n_test"))
    if costs is not None:
        blocks += [
            "Trading costs measured on the trades, next to the Corwin-Schultz estimate from "
            "daily bars (half-spreads in bp; Kyle's lambda in bp per $1M of signed flow; Y the "
            "square-root coefficient; R² out of sample).",
            pl.read_json(io.BytesIO(costs)).select(IMPACT_COLUMNS),
        ]
    pictures = sorted(name for name in figures if name.startswith("lob_"))
    captions = {
        name: (
            f"Depth heat-map {name[18:-4]}: resting size by price and time, mid and trades"
            if name.startswith("lob_depth_heatmap_")
            else f"Order-flow imbalance against the mid's change, {name[8:-4]}"
            if name.startswith("lob_ofi_")
            else "Impact curve: mean mid return against signed flow, with the fits"
        )
        for name in pictures
    }
    return [Section("Microstructure", (*blocks, *_figures(figures, captions)))]


def _figures(figures: dict[str, bytes], captions: dict[str, str]) -> list[Figure]:
    """The stored plots among ``captions``, with them; a plot never written is left out."""
    return [Figure(figures[name], caption) for name, caption in captions.items() if name in figures]
