"""Portfolio group: ensemble signals, strategy weights, a cost-aware backtest and the strategy
table with its honesty figures."""

from dataclasses import dataclass
from typing import Literal

import mlflow
import numpy as np
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MetadataValue,
    Output,
    ResourceParam,
    asset,
)
from pydantic import Field

from assets._meta import frame_metadata, image, png_bytes, table, to_markdown
from assets.ports import ReportStore, Tracker
from models.backtest import Costs, liquidity, performance, run_backtest
from models.leakage import MAX_STRATEGY_SHARPE, strategy_leaks
from models.metrics import daily_ic, ic_summary
from models.panel import daily_returns, session_returns
from models.plots import cluster_exposure_map, drawdown_curves, equity_curves, logit_histogram
from models.portfolio import (
    buy_and_hold,
    cluster_exposure,
    clusters_before,
    equal_weights,
    hrp_weights,
    mean_variance_weights,
    ml_expected_returns,
    rebalance_dates,
    risk_parity_weights,
    top_k_weights,
)
from models.stacking import StackedEnsemble, walk_forward_meta
from models.strategies import strategy_table as build_strategy_table
from models.strategies import top_k_variants
from models.trading_costs import forecast_spreads, spread_estimates
from models.training import BaseModels

STRATEGIES = (
    "ml_top_k",
    "ml_long_short",
    "mean_variance",
    "mean_variance_long_short",
    "risk_parity",
    "hrp",
    "equal_weight",
    "buy_and_hold",
)


class PortfolioConfig(Config):
    top_k: int = Field(default=5, description="Names held by the ML top-k book (each side).")
    rebalance_every: int = Field(default=5, description="Trading days between rebalances.")
    optimise_every: int | None = Field(
        default=None,
        description="Trading days between rebalances of the optimiser books (mean-variance, "
        "risk parity, HRP: one convex or clustering problem each); default rebalance_every.",
    )
    hrp_lookback: int = Field(
        default=252,
        description="Days of returns behind each HRP, risk-parity and mean-variance allocation.",
    )
    strategies: list[str] = Field(
        default=list(STRATEGIES), description=f"Strategies to build, of {', '.join(STRATEGIES)}."
    )
    ic: float = Field(
        default=0.05,
        description="Information coefficient that turns forecast z-scores into expected returns "
        "for mean-variance (mu = IC * volatility * z).",
    )
    risk_aversion: float = Field(
        default=5.0, description="Mean-variance: utility mu'w - risk_aversion * w'Sw."
    )
    max_weight: float = Field(default=0.2, description="Mean-variance: largest |weight| per name.")
    max_turnover: float | None = Field(
        default=None, description="Mean-variance: largest weight change per name per rebalance."
    )
    n_clusters: int = Field(
        default=4,
        description="Correlation clusters of the universe (skfolio's hierarchical clustering of "
        "the look-back window's returns): each book's exposure to them is reported.",
    )
    max_cluster_weight: float | None = Field(
        default=None,
        description="Mean-variance: largest net weight per correlation cluster (re-clustered at "
        "every rebalance on its look-back window).",
    )
    variant_top_k: list[int] = Field(
        default=[3, 5, 10],
        description="Top-k sizes of the ML book's variants (each variant is a trial for the "
        "deflated Sharpe ratio and PBO).",
    )
    variant_every: list[int] = Field(
        default=[5, 10, 21], description="Rebalance intervals of the ML book's variants."
    )


class BacktestConfig(Config):
    cost_bps: float = Field(
        default=10.0, description="Transaction cost per unit of turnover, in basis points."
    )
    lag: int = Field(default=1, description="Trading days between a signal's close and its trade.")
    fill: Literal["close", "open"] = Field(
        default="close",
        description="Trade at the close or at the open of the trading day (open needs open "
        "prices: the old book earns the night, the new one the day).",
    )
    impact_coef: float = Field(
        default=1.0,
        description="Square-root market impact: cost per unit traded = coef * daily volatility "
        "* sqrt(traded value / average daily dollar volume); needs volume data.",
    )
    capital: float = Field(
        default=1e7, description="Book size in currency, which sets the share of volume traded."
    )
    borrow_bps: float = Field(
        default=50.0, description="Annual fee on short positions, in basis points."
    )
    spread_cost: bool = Field(
        default=True,
        description="Charge half the forecast Corwin-Schultz spread per unit traded (where "
        "high, low and volume exist). From daily bars it reads far wider spreads than large "
        "caps quote (about 60 bp for S&P 500 names, 2016-2021): switch it off to charge "
        "cost_bps and impact only.",
    )


@asset(group_name="portfolio", kinds={"polars", "mlflow"}, io_manager_key="lake")
def signals(
    context: AssetExecutionContext,
    oof_predictions: pl.DataFrame,
    ensemble_model: StackedEnsemble,
    base_models: BaseModels,
    feature_matrix: pl.DataFrame,
    tracker: ResourceParam[Tracker],
) -> Output[pl.DataFrame]:
    """``[symbol, date, score, label, kind]``: ``oos`` rows are the ensemble's walk-forward
    predictions (the meta-learner refitted on earlier folds only); ``live`` rows score the
    latest date with the registered ensemble."""
    pred_cols = [f"pred_{m}" for m in base_models.params]
    history = walk_forward_meta(
        oof_predictions, pred_cols, ensemble_model.final_estimator, "target"
    )
    # the last dates only: enough history for the longest look-back window of any base model
    recent = feature_matrix.filter(
        pl.col("date") >= pl.col("date").unique().sort().tail(base_models.window).min()
    ).sort("date", "symbol")
    is_latest = (recent["date"] == recent["date"].max()).to_numpy()
    latest = recent.filter(is_latest)
    live = latest.select("symbol", "date").with_columns(
        score=pl.Series(ensemble_model.predict(base_models.ensemble_inputs(recent)[is_latest])),
        label=pl.lit(None, pl.Float64),
        kind=pl.lit("live"),
    )
    oos = history.select(
        "symbol", "date", pl.col("ensemble").alias("score"), "label", kind=pl.lit("oos")
    )
    frame = pl.concat([oos, live]).sort("date", "symbol")
    d, y = history["date"].to_numpy(), history["label"].to_numpy()
    summary = pl.DataFrame(
        [
            {"model": c.removeprefix("pred_"), **ic_summary(d, history[c].to_numpy(), y)}
            for c in [*pred_cols, "ensemble"]
        ]
    )
    with tracker.asset_run(context) as run:
        for row in summary.to_dicts():
            mlflow.log_metrics(
                {
                    f"{row['model']}_{k}": v
                    for k, v in row.items()
                    if k != "model" and np.isfinite(v)
                }
            )
    ic = daily_ic(d, history["ensemble"].to_numpy(), y)
    return Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "oos_metrics_same_dates": table(summary),
            "ensemble_rank_ic_mean": float(ic["ic"].mean()),
            "live_date": str(live["date"].max()),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.info.run_id)),
        },
    )


@asset(group_name="portfolio", kinds={"polars", "skfolio"}, io_manager_key="lake")
def portfolio_weights(
    context: AssetExecutionContext,
    config: PortfolioConfig,
    signals: pl.DataFrame,
    market_prices: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """Target weights ``[strategy, date, symbol, weight, kind]`` on rebalance dates of the
    out-of-sample period (``oos``), the ML book's grid of variants (``variant``, trials for the
    strategy table) and today's ML book (``live``). Optimisers are skfolio's."""
    oos = signals.filter(pl.col("kind") == "oos")
    live = signals.filter(pl.col("kind") == "live")
    dates = rebalance_dates(oos["date"], config.rebalance_every)
    slow = rebalance_dates(oos["date"], config.optimise_every or config.rebalance_every)
    universe = market_prices.filter(pl.col("symbol").is_in(oos["symbol"].unique().implode()))
    returns = daily_returns(universe)
    lookback = config.hrp_lookback

    def progress(book: str):
        """Logs a book's optimisations at every tenth of the way (hundreds of convex problems
        on a large universe)."""

        def report(done: int, total: int) -> None:
            if done % max(1, total // 10) == 0:
                context.log.info(f"{book}: rebalance {done + 1}/{total}")

        return report

    def mean_variance(long_short: bool) -> pl.DataFrame:
        mu = ml_expected_returns(oos, returns, config.ic)
        return mean_variance_weights(
            returns,
            slow,
            mu,
            lookback=lookback,
            risk_aversion=config.risk_aversion,
            max_weight=config.max_weight,
            long_short=long_short,
            max_turnover=config.max_turnover,
            max_cluster_weight=config.max_cluster_weight,
            n_clusters=config.n_clusters,
            progress=progress("mean_variance" + "_long_short" * long_short),
        )

    build = {
        "ml_top_k": lambda: top_k_weights(oos, dates, config.top_k),
        "ml_long_short": lambda: top_k_weights(oos, dates, config.top_k, long_short=True),
        "mean_variance": lambda: mean_variance(False),
        "mean_variance_long_short": lambda: mean_variance(True),
        "risk_parity": lambda: risk_parity_weights(
            returns, slow, lookback, progress("risk_parity")
        ),
        "hrp": lambda: hrp_weights(returns, slow, lookback, progress("hrp")),
        "equal_weight": lambda: equal_weights(universe, dates),
        "buy_and_hold": lambda: buy_and_hold(universe, dates),
    }
    books = [(name, build[name](), "oos") for name in config.strategies]
    books += [
        (name, w, "variant")
        for name, w in top_k_variants(oos, config.variant_top_k, config.variant_every)
    ]
    books.append(("ml_top_k", top_k_weights(live, live["date"].unique(), config.top_k), "live"))
    frame = pl.concat(
        w.with_columns(strategy=pl.lit(name), kind=pl.lit(kind)) for name, w, kind in books
    ).select("strategy", "date", "symbol", "weight", "kind")
    today = frame.filter(pl.col("kind") == "live").select("symbol", "weight")
    # clusters known at the start of the out-of-sample period, for every book's exposure
    clusters = clusters_before(returns, oos["date"].min(), lookback, config.n_clusters)
    exposure = cluster_exposure(frame.filter(pl.col("kind") == "oos"), clusters)
    exposure_png = png_bytes(cluster_exposure_map(exposure))
    return Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "clusters": table(
                clusters.group_by("cluster")
                .agg(pl.col("symbol").sort())
                .sort("cluster")
                .with_columns(pl.col("symbol").list.join(", "))
            ),
            "cluster_exposure": image(exposure_png, "mean net weight per correlation cluster"),
            "cluster_exposure_table": table(exposure),
            "rebalances": len(dates),
            "strategies": ", ".join(config.strategies),
            "variants": len(books) - len(config.strategies) - 1,
            "live_book": table(today),
        },
    )


@dataclass(frozen=True)
class CostModel:
    """What the backtest charges, set up once from the prices (see :func:`cost_model`)."""

    returns: pl.DataFrame  # [symbol, date, ret] (+ overnight, intraday for fills at the open)
    costs: Costs
    liquid: pl.DataFrame | None  # sigma and ADV for the impact, when volume exists
    spreads: pl.DataFrame | None  # forecast spreads, when high, low and volume exist
    has: dict[str, bool]

    def run(self, weights: pl.DataFrame, config: "BacktestConfig") -> pl.DataFrame:
        return run_backtest(
            weights,
            self.returns,
            lag=config.lag,
            fill=config.fill,
            costs=self.costs,
            liquid=self.liquid,
            spreads=self.spreads,
        )


def cost_model(config: "BacktestConfig", market_prices: pl.DataFrame) -> CostModel:
    """Returns, proportional costs, square-root impact (where volume exists) and the forecast
    spread (where high, low and volume exist) for ``config``."""
    returns = (session_returns if config.fill == "open" else daily_returns)(market_prices)
    has = {
        c: c in market_prices.columns and market_prices[c].is_not_null().any()
        for c in ("high", "low", "volume")
    }
    costs = Costs(
        config.cost_bps,
        config.impact_coef if has["volume"] else 0.0,
        config.capital,
        config.borrow_bps,
    )
    liquid = liquidity(market_prices) if has["volume"] else None
    spreads = None
    if config.spread_cost and all(has.values()):  # Corwin-Schultz: high, low; Amihud: volume
        spreads = forecast_spreads(spread_estimates(market_prices.drop_nulls(["high", "low"])))
    return CostModel(returns, costs, liquid, spreads, has)


@asset(group_name="portfolio", kinds={"polars", "mlflow"}, io_manager_key="lake")
def backtest(
    context: AssetExecutionContext,
    config: BacktestConfig,
    portfolio_weights: pl.DataFrame,
    seed_strategies: pl.DataFrame,
    market_prices: pl.DataFrame,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[pl.DataFrame]:
    """Daily ``[strategy, role, date, gross, commission, spread, impact, borrow, cost, net,
    turnover]`` of every strategy (``role`` = ``strategy``) and variant (``variant``) over the
    out-of-sample period: traded ``lag`` days after the signal, with proportional costs, half
    the forecast bid-ask spread and square-root market impact (where OHLCV exists) and
    borrowing on shorts."""
    model = cost_model(config, market_prices)
    spreads, has = model.spreads, model.has
    spread_quality = _spread_quality(spreads) if spreads is not None else {}
    books = pl.concat([portfolio_weights, seed_strategies]).filter(pl.col("kind") != "live")
    daily = pl.concat(
        model.run(w.drop("strategy", "kind"), config).with_columns(
            strategy=pl.lit(name), role=pl.lit("strategy" if kind == "oos" else "variant")
        )
        for (name, kind), w in books.group_by("strategy", "kind", maintain_order=True)
    ).select(
        "strategy",
        "role",
        "date",
        "gross",
        "commission",
        "spread",
        "impact",
        "borrow",
        "cost",
        "net",
        "turnover",
    )
    main = daily.filter(pl.col("role") == "strategy")
    summary = pl.DataFrame(
        [
            {"strategy": name, **performance(p["net"].to_numpy(), p["turnover"].to_numpy())}
            for (name,), p in main.group_by("strategy", maintain_order=True)
        ]
    )
    equity, drawdown = png_bytes(equity_curves(main)), png_bytes(drawdown_curves(main))
    paths = [reports.write("equity_curve.png", equity), reports.write("drawdowns.png", drawdown)]
    with tracker.asset_run(context) as run:
        mlflow.log_params(config.model_dump())
        for row in summary.to_dicts():
            mlflow.log_metrics(
                {
                    f"{row['strategy']}_{k}": v
                    for k, v in row.items()
                    if k != "strategy" and np.isfinite(v)
                }
            )
        for path in paths:
            mlflow.log_artifact(str(path))
    return Output(
        daily,
        metadata={
            **frame_metadata(daily),
            "performance": table(summary),
            "market_impact": "square-root law on volume"
            if has["volume"]
            else "not charged: the prices carry no volume",
            "spread_cost": "half the LightGBM forecast of the Corwin-Schultz spread"
            if spreads is not None
            else "not charged: the prices carry no high/low/volume"
            if config.spread_cost
            else "not charged (portfolio.spread_cost: false)",
            **spread_quality,
            "equity_curve": image(equity, "equity curve"),
            "drawdowns": image(drawdown, "drawdowns"),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.info.run_id)),
        },
    )


def _spread_quality(spreads: pl.DataFrame) -> dict[str, float]:
    """Out-of-sample mean absolute error of the spread forecast and of the naive one."""
    scored = spreads.drop_nulls("spread_realised")
    err = lambda c: float((scored[c] - scored["spread_realised"]).abs().mean())  # noqa: E731
    return {"spread_mae_lightgbm": err("spread_forecast"), "spread_mae_naive": err("spread_naive")}


@asset(
    group_name="portfolio",
    kinds={"polars", "mlflow"},
    io_manager_key="lake",
    check_specs=[
        AssetCheckSpec(
            "check_strategy_table_plausible",
            asset="strategy_table",
            description="No strategy's net Sharpe ratio is too good to be true (above "
            f"{MAX_STRATEGY_SHARPE}): a sign of look-ahead in the signals or the backtest.",
        )
    ],
)
def strategy_table(
    context: AssetExecutionContext,
    backtest: pl.DataFrame,
    base_models: BaseModels,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
):
    """One row per strategy: annual return and Sharpe before and after costs, Sortino, Calmar,
    drawdown and its duration, turnover, hit rate, and the honesty figures: the deflated Sharpe
    ratio over every trial run (strategies, variants and the models' Optuna trials) and the
    probability of backtest overfitting (CSCV over the strategies and variants)."""
    main = backtest.filter(pl.col("role") == "strategy")
    variants = backtest.filter(pl.col("role") == "variant")
    optuna_trials = sum(base_models.n_trials.values())
    frame, pbo = build_strategy_table(main, variants, extra_trials=optuna_trials)
    leaks = strategy_leaks(frame)
    png = png_bytes(logit_histogram(pbo.logits, pbo.pbo))
    path = reports.write("pbo_logits.png", png)
    reports.write("strategy_table.md", to_markdown(frame, ".3f"))
    with tracker.asset_run(context) as parent:
        mlflow.log_metrics(
            {"pbo": pbo.pbo, "prob_oos_loss": pbo.prob_oos_loss, "n_trials": frame["n_trials"][0]}
        )
        mlflow.log_artifact(str(path))
        best = frame.sort("sharpe", descending=True, nulls_last=True).row(0, named=True)
        tracker.log_headline(
            context,
            {"best_net_sharpe": best["sharpe"], "best_net_sharpe_dsr": best["dsr"], "pbo": pbo.pbo},
        )
        for row in frame.to_dicts():  # one MLflow run per strategy, comparable side by side
            with mlflow.start_run(run_name=f"strategy {row['strategy']}", nested=True):
                mlflow.set_tag("strategy", row["strategy"])
                mlflow.log_metrics(
                    {k: float(v) for k, v in row.items() if k != "strategy" and np.isfinite(v)}
                )
    yield Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "strategy_table": table(frame),
            "pbo": MetadataValue.float(round(pbo.pbo, 4)),
            "pbo_splits": pbo.n_splits,
            "n_trials": int(frame["n_trials"][0]),
            "pbo_logits": image(png, "PBO logit distribution"),
            "mlflow_run": MetadataValue.url(tracker.run_url(parent.info.run_id)),
        },
    )
    yield AssetCheckResult(
        check_name="check_strategy_table_plausible",
        passed=not leaks,
        severity=AssetCheckSeverity.ERROR,
        description=f"net Sharpe <= {MAX_STRATEGY_SHARPE} for every strategy",
        metadata={"suspects": "; ".join(f"{x.where}: {x.detail}" for x in leaks) or "none"},
    )
