"""Reports group: one self-contained HTML report per run, with the JSON behind its tables."""

import polars as pl
from dagster import (
    AssetExecutionContext,
    DagsterEventType,
    MetadataValue,
    Output,
    ResourceParam,
    asset,
)

from assets._meta import png_bytes
from assets.ports import ReportStore, Tracker
from models.plots import equity_curves, universe_counts, var_backtest_plot
from models.report import Figure, Section, html_report, report_json
from models.universe import excluded_symbols
from models.var_backtest import coverage_table


@asset(group_name="reports", kinds={"html", "mlflow"}, io_manager_key="lake")
def run_report(
    context: AssetExecutionContext,
    backtest: pl.DataFrame,
    strategy_table: pl.DataFrame,
    var_backtest: pl.DataFrame,
    risk_report: dict,
    shap_explanations: pl.DataFrame,
    stress_scenarios: dict,
    correlation_forecasts: pl.DataFrame,
    universe: pl.DataFrame,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[dict]:
    """The run's results on one page, ``reports/<run id>/report.html`` and
    ``reports/latest/report.html`` (figures embedded), with ``report.json``: strategies and
    their honesty figures, VaR and its backtest, stress tests and SHAP explanations, and the
    investable universe with every symbol it excluded and why."""
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
                *_figures(reports, {"scenario_realism.png": "Real against generated windows"}),
            ),
        ),
        Section(
            "Dynamic correlation",
            (
                "The holdings' correlation forecast block by block out of sample; mse of the "
                "off-diagonal entries against the realised correlation (lower is better).",
                correlation_forecasts,
                *_figures(
                    reports, {"correlation_forecast.png": "DCC correlation forecast and its change"}
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
                    reports,
                    {
                        "shap_summary.png": "SHAP summary (beeswarm) of the explained model",
                        "shap_dependence.png": "SHAP dependence of the top features",
                    },
                ),
            ),
        ),
    ]
    sections += _microstructure(reports)
    subtitle = f"Dagster run {context.run_id}"
    page = html_report("AlphaForge run report", subtitle, sections)
    data = report_json(sections)
    written = [
        reports.write(f"{folder}/{name}", payload)
        for folder in (context.run_id, "latest")
        for name, payload in (("report.html", page), ("report.json", data))
    ]
    with tracker.asset_run(context) as run:
        for path in written[:2]:
            run.log_artifact(str(path), "report")
        tracker.log_headline(context, _ingest_counts(context))
    return Output(
        {
            "html": str(written[0]),
            "latest": str(written[2]),
            "sections": [s.title for s in sections],
        },
        metadata={
            # where the home keeps it (a home moved elsewhere keeps the same relative path)
            "report": MetadataValue.path(f"reports/{context.run_id}/report.html"),
            "latest": MetadataValue.path("reports/latest/report.html"),
            # served by the MLflow UI, which shows the page (a file:// link is blocked from an
            # http page)
            "report_url": MetadataValue.url(tracker.artifact_url(run.run_id, "report/report.html")),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
    )


def _microstructure(reports: ReportStore) -> list[Section]:
    """The order-book results the microstructure group left in the report store (its latest
    run's), or nothing when it never ran (no ``data.lob``)."""
    import io

    models, costs = reports.read("lob_models.json"), reports.read("lob_impact.json")
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
            pl.read_json(io.BytesIO(costs)).select(
                "symbol",
                "quoted_half_spread_bp",
                "effective_half_spread_bp",
                "cs_half_spread_bp",
                "kyle_lambda_bp_per_musd",
                "kyle_r2_oos",
                "sqrt_coef",
                "sqrt_r2_oos",
            ),  # fmt: skip
        ]
    pictures = sorted(
        p.name for p in reports.paths() if p.name.startswith("lob_") and p.suffix == ".png"
    )
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
    return [Section("Microstructure", (*blocks, *_figures(reports, captions)))]


def _ingest_counts(context: AssetExecutionContext) -> dict[str, float]:
    """Rows this Dagster run read from the price source and rows it quarantined (history and
    daily partitions together), from the run's own materializations; nothing when the run did
    not ingest."""
    records = context.instance.get_records_for_run(
        context.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    rows_in = quarantined = 0
    ingested, seen = False, set()
    for record in records:
        materialization = record.asset_materialization
        key, metadata = materialization.asset_key.to_user_string(), materialization.metadata
        if key in seen:  # a range of daily partitions: one output, its metadata on each
            continue
        seen.add(key)
        if key in ("price_history", "daily_prices") and "rows_read" in metadata:
            rows_in += int(metadata["rows_read"].value)
            ingested = True
        elif key in ("price_quarantine", "daily_quarantine") and "dagster/row_count" in metadata:
            quarantined += int(metadata["dagster/row_count"].value)
    return {"rows_in": rows_in, "rows_quarantined": quarantined} if ingested else {}


def _figures(reports: ReportStore, captions: dict[str, str]) -> list[Figure]:
    """The plots other assets wrote to the report store (from their latest materialization),
    with captions; a plot never written is left out."""
    return [
        Figure(png, caption)
        for name, caption in captions.items()
        if (png := reports.read(name)) is not None
    ]
