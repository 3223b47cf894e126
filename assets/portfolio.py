"""Portfolio group: ensemble signals, strategy weights and a cost-aware backtest."""

import mlflow
import numpy as np
import polars as pl
from dagster import AssetExecutionContext, Config, MetadataValue, Output, ResourceParam, asset
from pydantic import Field

from assets._meta import frame_metadata, image, png_bytes, table
from assets.ports import ReportStore, Tracker
from models.backtest import performance, run_backtest
from models.metrics import daily_ic, ic_summary
from models.panel import daily_returns
from models.plots import equity_curves
from models.portfolio import equal_weights, hrp_weights, rebalance_dates, top_k_weights
from models.stacking import StackedEnsemble, walk_forward_meta
from models.training import BaseModels


class PortfolioConfig(Config):
    top_k: int = Field(default=5, description="Names held by the ML top-k book.")
    rebalance_every: int = Field(default=5, description="Trading days between rebalances.")
    hrp_lookback: int = Field(
        default=252, description="Days of returns behind each HRP allocation."
    )


class BacktestConfig(Config):
    cost_bps: float = Field(
        default=10.0, description="Transaction cost per unit of turnover, in basis points."
    )
    lag: int = Field(default=1, description="Trading days between a signal's close and its trade.")


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
    config: PortfolioConfig, signals: pl.DataFrame, market_prices: pl.DataFrame
) -> Output[pl.DataFrame]:
    """Target weights ``[strategy, date, symbol, weight, kind]`` on rebalance dates of the
    out-of-sample period (``oos``) and for today (``live``): the ML top-k book, hierarchical
    risk parity (skfolio) and the equal-weight benchmark."""
    oos = signals.filter(pl.col("kind") == "oos")
    live = signals.filter(pl.col("kind") == "live")
    dates = rebalance_dates(oos["date"], config.rebalance_every)
    universe = market_prices.filter(pl.col("symbol").is_in(oos["symbol"].unique().implode()))
    books = {
        "ml_top_k": top_k_weights(oos, dates, config.top_k),
        "hrp": hrp_weights(daily_returns(universe), dates, config.hrp_lookback),
        "equal_weight": equal_weights(universe, dates),
    }
    frame = pl.concat(
        [w.with_columns(strategy=pl.lit(name), kind=pl.lit("oos")) for name, w in books.items()]
        + [
            top_k_weights(live, live["date"].unique(), config.top_k).with_columns(
                strategy=pl.lit("ml_top_k"), kind=pl.lit("live")
            )
        ]
    ).select("strategy", "date", "symbol", "weight", "kind")
    today = frame.filter(pl.col("kind") == "live").select("symbol", "weight")
    return Output(
        frame,
        metadata={**frame_metadata(frame), "rebalances": len(dates), "live_book": table(today)},
    )


@asset(group_name="portfolio", kinds={"polars", "mlflow"}, io_manager_key="lake")
def backtest(
    context: AssetExecutionContext,
    config: BacktestConfig,
    portfolio_weights: pl.DataFrame,
    market_prices: pl.DataFrame,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[pl.DataFrame]:
    """Daily ``[strategy, date, gross, cost, net, turnover]`` of every strategy over the
    out-of-sample period, net of costs; Sharpe, drawdown and annual return in metadata."""
    returns = daily_returns(market_prices)
    oos = portfolio_weights.filter(pl.col("kind") == "oos")
    daily = pl.concat(
        run_backtest(
            w.drop("strategy", "kind"), returns, cost_bps=config.cost_bps, lag=config.lag
        ).with_columns(strategy=pl.lit(name))
        for (name,), w in oos.group_by("strategy", maintain_order=True)
    ).select("strategy", "date", "gross", "cost", "net", "turnover")
    summary = pl.DataFrame(
        [
            {"strategy": name, **performance(p["net"].to_numpy(), p["turnover"].to_numpy())}
            for (name,), p in daily.group_by("strategy", maintain_order=True)
        ]
    )
    png = png_bytes(equity_curves(daily))
    path = reports.write("equity_curve.png", png)
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
        mlflow.log_artifact(str(path))
    return Output(
        daily,
        metadata={
            **frame_metadata(daily),
            "performance": table(summary),
            "equity_curve": image(png, "equity curve"),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.info.run_id)),
        },
    )
