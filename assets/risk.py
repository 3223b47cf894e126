"""Risk group: VaR / CVaR of the strategies and historical stress tests of today's book."""

import json
from datetime import date

import mlflow
import polars as pl
from dagster import AssetExecutionContext, Config, MetadataValue, Output, ResourceParam, asset
from pydantic import Field

from assets._meta import frame_metadata, image, png_bytes, table, to_markdown
from assets.ports import ReportStore, Tracker
from models.anomaly import anomalies
from models.backtest import performance
from models.plots import var_lines
from models.risk import STRESS_EPISODES, stress_test, var_table


class RiskConfig(Config):
    levels: list[float] = Field(default=[0.95, 0.99], description="VaR / CVaR confidence levels.")
    horizons: list[int] = Field(default=[1, 10], description="VaR horizons in trading days.")
    strategy: str = Field(
        default="ml_top_k", description="Strategy whose returns and live book are assessed."
    )
    methods: list[str] = Field(
        default=["historical", "normal"], description="VaR methods: historical, normal."
    )
    stress_episodes: dict[str, list[str]] = Field(
        default={
            name: [start.isoformat(), end.isoformat()]
            for name, (start, end) in STRESS_EPISODES.items()
        },
        description="Historical episodes (name -> [first day, last day]) today's book is replayed through.",
    )


@asset(group_name="risk", kinds={"polars", "mlflow"}, io_manager_key="lake")
def risk_report(
    context: AssetExecutionContext,
    config: RiskConfig,
    backtest: pl.DataFrame,
    portfolio_weights: pl.DataFrame,
    market_prices: pl.DataFrame,
    alt_data: pl.DataFrame,
    return_anomalies: pl.DataFrame,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[dict]:
    """Historical and parametric VaR / CVaR of every strategy's out-of-sample net returns, and
    today's book replayed through historical stress episodes; written to ``reports/``."""
    backtest = backtest.filter(pl.col("role") == "strategy")  # not the variants tried
    var = (
        pl.concat(
            var_table(p["net"].to_numpy(), config.levels, horizon=h).with_columns(
                strategy=pl.lit(name)
            )
            for (name,), p in backtest.group_by("strategy", maintain_order=True)
            for h in config.horizons
        )
        .select("strategy", "horizon_days", "method", "level", "var", "cvar")
        .filter(pl.col("method").is_in(config.methods))
    )
    live = portfolio_weights.filter(
        (pl.col("kind") == "live") & (pl.col("strategy") == config.strategy)
    )
    benchmark = alt_data.filter(pl.col("series") == "SP500").select(
        "date", pl.col("value").alias("close"), symbol=pl.lit("SP500")
    )
    episodes = {
        name: (date.fromisoformat(a), date.fromisoformat(b))
        for name, (a, b) in config.stress_episodes.items()
    }
    stress = stress_test(
        dict(zip(live["symbol"], live["weight"], strict=True)),
        market_prices,
        episodes,
        benchmark=benchmark,
    )
    perf = pl.DataFrame(
        [
            {"strategy": name, **performance(p["net"].to_numpy())}
            for (name,), p in backtest.group_by("strategy", maintain_order=True)
        ]
    )
    chosen = backtest.filter(pl.col("strategy") == config.strategy)
    one_day = var.filter(
        (pl.col("strategy") == config.strategy)
        & (pl.col("horizon_days") == 1)
        & (pl.col("method") == "historical")
    )
    figure = var_lines(
        chosen["date"].to_numpy(),
        chosen["net"].to_numpy(),
        {f"VaR{int(r['level'] * 100)}": r["var"] for r in one_day.to_dicts()},
    )
    png = png_bytes(figure)
    flagged = return_anomalies.filter(pl.col("anomaly")).sort("score", descending=True).head(15)
    markdown = _markdown(perf, var, stress, live, flagged, context.run_id)
    written = [
        reports.write("risk_report.md", markdown),
        reports.write(
            "risk_report.json",
            json.dumps(
                {
                    "var": var.to_dicts(),
                    "stress": stress.with_columns(
                        pl.col("start", "end").cast(pl.String)
                    ).to_dicts(),
                    "performance": perf.to_dicts(),
                    "anomalies": flagged.with_columns(pl.col("date").cast(pl.String)).to_dicts(),
                },
                indent=2,
            ),
        ),
        reports.write("var_backtest.png", png),
    ]
    with tracker.asset_run(context) as run:
        for row in var.filter(pl.col("strategy") == config.strategy).to_dicts():
            key = f"{row['method']}_{int(row['level'] * 100)}_{row['horizon_days']}d"
            mlflow.log_metrics({f"var_{key}": row["var"], f"cvar_{key}": row["cvar"]})
        for path in written:
            mlflow.log_artifact(str(path), "report")
    return Output(
        {"var": var, "stress": stress, "performance": perf},
        metadata={
            "var": table(var),
            "stress": table(stress),
            "report": MetadataValue.path(str(written[0])),
            "var_backtest": image(png, "returns vs VaR"),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.info.run_id)),
        },
    )


def _markdown(
    perf: pl.DataFrame,
    var: pl.DataFrame,
    stress: pl.DataFrame,
    live: pl.DataFrame,
    flagged: pl.DataFrame,
    run_id: str,
) -> str:
    return (
        "\n\n".join(
            [
                "# AlphaForge risk report",
                f"Dagster run `{run_id}`. Every figure below is out-of-sample and net of costs. "
                "The bundled universe is today's S&P 500 names: survivorship bias flatters the results.",
                "## Strategy performance (out-of-sample)",
                to_markdown(perf),
                "![equity curves](equity_curve.png)",
                "## Value at risk and expected shortfall (loss as a fraction of value)",
                to_markdown(var),
                "![returns vs VaR](var_backtest.png)",
                "## Stress test: today's book replayed through historical episodes",
                to_markdown(stress),
                "## Today's book",
                to_markdown(live.select("symbol", "weight")),
                "## Surveillance: most unusual asset-days lately (isolation forest fitted on earlier days)",
                to_markdown(
                    flagged.select(
                        "symbol",
                        "date",
                        "score",
                        *[c for c in ("ret_1", "vol_20") if c in flagged.columns],
                    )
                )
                if flagged.height
                else "No asset-day stood out.",
            ]
        )
        + "\n"
    )


class AnomalyConfig(Config):
    days: int = Field(
        default=60, description="Trading days scored (the rest of history trains the forest)."
    )
    contamination: float = Field(
        default=0.01, description="Share of historical asset-days treated as anomalous."
    )


@asset(group_name="risk", kinds={"sklearn", "polars"}, io_manager_key="lake")
def return_anomalies(config: AnomalyConfig, feature_matrix: pl.DataFrame) -> Output[pl.DataFrame]:
    """Surveillance view: each asset-day of the last ``days`` scored by an isolation forest fitted
    on earlier days only; ``anomaly`` flags the unusual ones."""
    dates = feature_matrix["date"].unique().sort()
    since = dates[-min(config.days, len(dates) - 1)]
    frame = anomalies(feature_matrix, since=since, contamination=config.contamination)
    flagged = frame.filter(pl.col("anomaly")).sort("score", descending=True)
    return Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "since": str(since),
            "flagged": int(flagged.height),
            "top_flagged": table(flagged.head(10).select("symbol", "date", "score", "ret_1")),
        },
    )
