"""Risk group: VaR / ES by six methods and their backtest, generated scenarios, and stress
tests of today's book."""

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, Config, MetadataValue, Output, ResourceParam, asset
from pydantic import Field

from assets._meta import frame_metadata, image, png_bytes, table, to_markdown
from assets.ports import ReportStore, Tracker
from models.data.panel import daily_returns
from models.reporting.plots import correlation_change, scenario_realism, var_backtest_plot
from models.risk.anomaly import anomalies
from models.risk.correlation import compare_correlation_forecasts
from models.risk.report import risk_json, risk_markdown
from models.risk.report import risk_report as build_risk_report
from models.risk.scenarios import WindowGAN, generate_scenarios, return_windows
from models.risk.stress import STRESS_EPISODES
from models.risk.var import METHODS
from models.risk.var_backtest import backtest_var, coverage_table


class RiskConfig(Config):
    levels: list[float] = Field(default=[0.95, 0.99], description="VaR / CVaR confidence levels.")
    horizons: list[int] = Field(default=[1, 10], description="VaR horizons in trading days.")
    strategy: str = Field(
        default="ml_top_k", description="Strategy whose returns and live book are assessed."
    )
    methods: list[str] = Field(
        default=list(METHODS),
        description="VaR / ES methods: historical, normal, student_t, cornish_fisher, evt "
        "(peaks over threshold), fhs_garch (filtered historical simulation on a GARCH(1,1)).",
    )
    stress_episodes: dict[str, list[str]] = Field(
        default={
            name: [start.isoformat(), end.isoformat()]
            for name, (start, end) in STRESS_EPISODES.items()
        },
        description="Historical episodes (name -> [first day, last day]) today's book is replayed through.",
    )


class VarBacktestConfig(Config):
    strategy: str = Field(
        default="ml_top_k", description="Strategy whose net returns are backtested."
    )
    levels: list[float] = Field(default=[0.95, 0.99], description="VaR confidence levels.")
    methods: list[str] = Field(default=list(METHODS), description="VaR methods backtested.")
    window: int = Field(
        default=500, description="Trading days of history behind each one-day-ahead forecast."
    )
    refit_every: int = Field(
        default=20,
        description="Days between maximum-likelihood refits (Student-t, EVT, GARCH); the "
        "moment and quantile methods are re-estimated daily, GARCH filters its volatility daily.",
    )


@asset(group_name="risk", kinds={"polars", "mlflow"}, io_manager_key="lake")
def var_backtest(
    context: AssetExecutionContext,
    config: VarBacktestConfig,
    backtest: pl.DataFrame,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[pl.DataFrame]:
    """Every VaR method forecast one day ahead from a rolling window of the strategy's
    out-of-sample net returns, and backtested: exceptions, Kupiec, Christoffersen, Basel zone."""
    book = backtest.filter(
        (pl.col("strategy") == config.strategy) & (pl.col("role") == "strategy")
    ).sort("date")
    window = config.window
    if book.height <= window + 50:
        # a short out-of-sample history (a five-year download): half of it behind each
        # forecast, half forecast, rather than no VaR backtest at all; said in the log and
        # the metadata
        window = max(60, book.height // 2)
        if book.height <= window + 50:
            raise ValueError(
                f"var_backtest: {book.height} days of {config.strategy!r} returns leave fewer "
                f"than 50 forecast days after the shortest window (60 days)"
            )
        context.log.warning(
            f"var_backtest: {book.height} days of {config.strategy!r} returns cannot hold a "
            f"window of {config.window} and 50 forecast days; using a window of {window}"
        )
    forecasts = backtest_var(
        book["date"].to_numpy(),
        book["net"].to_numpy(),
        config.methods,
        config.levels,
        window,
        config.refit_every,
    )
    coverage = coverage_table(forecasts)
    pngs = {lv: png_bytes(var_backtest_plot(forecasts, lv)) for lv in config.levels}
    paths = [reports.write(f"var_backtest_{int(lv * 100)}.png", p) for lv, p in pngs.items()]
    paths.append(reports.write("var_coverage.md", to_markdown(coverage, ".3f")))
    with tracker.asset_run(context) as run:
        for row in coverage.to_dicts():
            key = f"{row['method']}_{int(row['level'] * 100)}"
            run.log_metrics(
                {f"exceptions_{key}": row["exceptions"], f"kupiec_p_{key}": row["kupiec_p"]}
            )
        for path in paths:
            run.log_artifact(str(path), "var_backtest")
        headline = {"var_red_zone_methods": float((coverage["zone"] == "red").sum())}
        for (level,), part in coverage.group_by("level"):
            pct = round(level * 100)
            headline |= {
                f"var{pct}_exceptions_expected": part["expected"].mean(),
                f"var{pct}_exceptions_min": part["exceptions"].min(),
                f"var{pct}_exceptions_max": part["exceptions"].max(),
            }
        tracker.log_headline(context, headline)
    shown = coverage.select(
        "method",
        "level",
        "days",
        "exceptions",
        "expected",
        "kupiec_p",
        "independence_p",
        "conditional_p",
        "zone",
    )
    return Output(
        forecasts,
        metadata={
            **frame_metadata(forecasts),
            "coverage": table(shown),
            "red_zone": int((coverage["zone"] == "red").sum()),
            "window_days": window,
            **{
                f"var_backtest_{int(lv * 100)}": image(p, f"returns vs rolling {lv:.0%} VaR")
                for lv, p in pngs.items()
            },
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
    )


class ScenarioConfig(Config):
    length: int = Field(default=20, description="Trading days in each generated scenario.")
    n_scenarios: int = Field(default=2000, description="Scenarios drawn.")
    history_days: int = Field(
        default=2520, description="Most recent trading days whose windows the GAN learns."
    )
    max_assets: int = Field(
        default=30, description="Assets modelled jointly (those with a full history, by name)."
    )
    gan: bool = Field(default=True, description="Train the GAN; false: bootstrap only.")
    gan_steps: int = Field(default=1500, description="GAN generator updates.")
    seed: int = Field(default=0, description="Seed of the GAN and of the draws.")


@asset(group_name="risk", kinds={"pytorch", "mlflow"}, io_manager_key="lake")
def stress_scenarios(
    context: AssetExecutionContext,
    config: ScenarioConfig,
    market_prices: pl.DataFrame,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[dict]:
    """Generated multi-asset return scenarios for the Monte Carlo VaR and stress tests: a GAN
    (weekly: the heavy part) used only when it passes the realism checks against the real
    windows (fat tails, volatility clustering, correlation, no mode collapse), else a bootstrap
    of historical windows; the report says which."""
    returns = daily_returns(market_prices)
    days = returns["date"].unique().sort().tail(config.history_days)
    wide = (
        returns.filter(pl.col("date").is_in(days.implode()))
        .pivot(on="symbol", index="date", values="ret", sort_columns=True)
        .sort("date")
    )
    full = [c for c in wide.columns[1:] if wide[c].null_count() == 0][: config.max_assets]
    if len(full) < 2:
        raise ValueError(
            f"stress_scenarios: only {len(full)} assets have returns on all of the last "
            f"{len(days)} days; lower risk.scenario_history_days"
        )
    matrix = wide.select(full).to_numpy()

    def progress(step: int, loss: float) -> None:
        context.log.info(f"GAN step {step}/{config.gan_steps}: critic loss {loss:.3f}")

    gan = WindowGAN(steps=config.gan_steps, random_state=config.seed) if config.gan else None
    out = generate_scenarios(matrix, config.length, config.n_scenarios, gan, config.seed, progress)
    real = return_windows(matrix, config.length)
    png = png_bytes(scenario_realism(real, out.windows, out.source))
    path = reports.write("scenario_realism.png", png)
    with tracker.asset_run(context) as run:
        run.log_params({"source": out.source, "assets": len(full), "length": config.length})
        for row in out.checks.to_dicts():
            run.log_metric(
                f"gan_{row['name'].replace('|', '').replace(' ', '_')}", row["generated"]
            )
        run.log_artifact(str(path), "scenarios")
    return Output(
        {
            "symbols": full,
            "windows": out.windows.astype(np.float32),
            "source": out.source,
            "checks": out.checks,
            "reason": out.reason,
        },
        metadata={
            "source": out.source,
            "reason": out.reason,
            "assets": len(full),
            "scenarios": config.n_scenarios,
            **({"realism_checks": table(out.checks)} if out.checks.height else {}),
            "realism": image(png, "real vs generated windows"),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
    )


class CorrelationConfig(Config):
    strategy: str = Field(default="ml_top_k", description="Strategy whose holdings are studied.")
    test_days: int = Field(
        default=750, description="Last days scored out of sample; every model fits before them."
    )
    horizon: int = Field(default=20, description="Days per forecast block.")
    max_assets: int = Field(default=20, description="Largest holdings studied.")


@asset(group_name="risk", kinds={"pytorch", "mlflow"}, io_manager_key="lake")
def correlation_forecasts(
    context: AssetExecutionContext,
    config: CorrelationConfig,
    market_prices: pl.DataFrame,
    portfolio_weights: pl.DataFrame,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[pl.DataFrame]:
    """The correlation of today's holdings forecast block by block out of sample by EWMA,
    DCC-GARCH and an LSTM, scored against the realised correlation with the trailing year as
    the reference; a heat-map of the DCC forecast and its change since the previous block."""
    live = portfolio_weights.filter(
        (pl.col("kind") == "live") & (pl.col("strategy") == config.strategy)
    ).sort("weight", descending=True)
    symbols = sorted(live["symbol"].head(config.max_assets).to_list())
    wide = (
        daily_returns(market_prices.filter(pl.col("symbol").is_in(symbols)))
        .pivot(on="symbol", index="date", values="ret")
        .sort("date")
        .drop_nulls()
    )
    split = wide.height - config.test_days
    out = compare_correlation_forecasts(wide.select(symbols).to_numpy(), split, config.horizon)
    png = png_bytes(correlation_change(symbols, out.latest["dcc"], out.previous["dcc"], "DCC"))
    path = reports.write("correlation_forecast.png", png)
    a, b = out.dcc_params
    with tracker.asset_run(context) as run:
        run.log_params({"dcc_a": a, "dcc_b": b, "assets": len(symbols)})
        run.log_metrics(
            {
                f"corr_mse_{m}": v
                for m, v in zip(out.scores["method"], out.scores["mse"], strict=True)
            }
        )
        run.log_artifact(str(path), "correlation")
    return Output(
        out.scores,
        metadata={
            "scores": table(out.scores),
            "assets": ", ".join(symbols),
            "test_from": str(wide["date"][split]),
            "dcc_a_b": f"{a:.4f}, {b:.4f}",
            "correlation": image(png, "DCC correlation forecast and its change"),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
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
    var_backtest: pl.DataFrame,
    stress_scenarios: dict,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[dict]:
    """VaR and ES of every strategy's out-of-sample net returns by every method, the VaR
    backtest's coverage, and today's book under stress: historical episodes, hypothetical
    market and volatility shocks, and Monte Carlo over the generated scenarios."""
    live = portfolio_weights.filter(
        (pl.col("kind") == "live") & (pl.col("strategy") == config.strategy)
    )
    risk = build_risk_report(
        backtest.filter(pl.col("role") == "strategy"),  # not the variants tried
        live,
        market_prices,
        alt_data.filter(pl.col("series") == "SP500"),
        var_backtest,
        return_anomalies,
        stress_scenarios,
        levels=config.levels,
        horizons=config.horizons,
        methods=config.methods,
        stress_episodes=config.stress_episodes,
    )
    var, png = risk.var, png_bytes(var_backtest_plot(var_backtest, max(config.levels)))
    written = [
        reports.write("risk_report.md", risk_markdown(risk, live, context.run_id)),
        reports.write("risk_report.json", risk_json(risk)),
        reports.write("var_backtest.png", png),
    ]
    with tracker.asset_run(context) as run:
        for row in var.filter(pl.col("strategy") == config.strategy).to_dicts():
            key = f"{row['method']}_{int(row['level'] * 100)}_{row['horizon_days']}d"
            run.log_metrics({f"var_{key}": row["var"], f"es_{key}": row["es"]})
        for path in written:
            run.log_artifact(str(path), "report")
    return Output(
        risk.lake(),
        metadata={
            "var": table(var),
            "stress": table(risk.stress),
            "report": MetadataValue.path(str(written[0])),
            "var_backtest": image(png, "returns vs VaR"),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
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
