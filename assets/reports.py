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

from assets.ports import ReportStore, Tracker
from models.reporting.html import html_report, report_json
from models.reporting.run_report import STORED_FIGURES, run_report_sections


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
    sections = run_report_sections(
        backtest,
        strategy_table,
        var_backtest,
        risk_report,
        shap_explanations,
        stress_scenarios,
        correlation_forecasts,
        universe,
        _stored_figures(reports),
        reports.read("lob_models.json"),
        reports.read("lob_impact.json"),
    )
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


def _stored_figures(reports: ReportStore) -> dict[str, bytes]:
    """The pictures other assets left in the report store that the report shows."""
    names = [*STORED_FIGURES, *(p.name for p in reports.paths() if p.name.startswith("lob_"))]
    return {n: png for n in names if n.endswith(".png") and (png := reports.read(n)) is not None}
