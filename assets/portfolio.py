"""Portfolio group: ensemble signals, strategy weights, a cost-aware backtest and the strategy
table with its honesty figures."""

from datetime import date

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

from assets._config import BacktestConfig, CostConfig, build_cost_model, keyword_settings
from assets._meta import frame_metadata, image, png_bytes, table, to_markdown
from assets.ports import ReportStore, Tracker
from models.backtest.engine import CostModel, performance
from models.backtest.strategy_table import strategy_table as build_strategy_table
from models.data.universe import investable, screen_weights, without_stale_days
from models.learning.leakage import MAX_STRATEGY_SHARPE, strategy_leaks
from models.learning.metrics import daily_ic, ic_summary
from models.learning.stacking import StackedEnsemble, walk_forward_meta
from models.learning.training import BaseModels
from models.portfolio.books import portfolio_books
from models.reporting.plots import (
    cluster_exposure_map,
    drawdown_curves,
    equity_curves,
    logit_histogram,
)

STRATEGIES = (
    "ml_top_k",
    "ml_long_short",
    "topk_dropout",
    "ml_hold_buffer",
    "mean_variance",
    "mean_variance_long_short",
    "mean_variance_tc",
    "mean_variance_long_short_tc",
    "risk_parity",
    "hrp",
    "equal_weight",
    "buy_and_hold",
)


class PortfolioConfig(CostConfig):
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
    turnover_k: int | None = Field(
        default=None,
        description="Names held by the turnover-aware books (topk_dropout, ml_hold_buffer); "
        "default top_k.",
    )
    dropout_n: int = Field(
        default=1,
        description="topk_dropout (Qlib's TopkDropout): names replaced at most per rebalance.",
    )
    hold_buffer: int = Field(
        default=5,
        description="ml_hold_buffer: buy at rank <= k, sell only past rank k + hold_buffer.",
    )
    smooth_halflife: float = Field(
        default=0.0,
        description="Half-life in trading days of the exponential average of each name's "
        "score (its cross-sectional percentile, point in time) that the turnover-aware and "
        "cost-aware books read; 0 = the raw scores.",
    )
    cost_aversion: float = Field(
        default=1.0,
        description="mean_variance_tc books: multiple of the expected trading cost (commission "
        "plus the forecast half-spread, spread over the rebalance interval) in the objective.",
    )
    start_date: str | None = Field(
        default=None,
        description="First date (ISO) the books trade (the out-of-sample signals before it are "
        "not traded); default the first out-of-sample date.",
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
            run.log_metrics(
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
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
    )


@asset(group_name="portfolio", kinds={"polars", "skfolio"}, io_manager_key="lake")
def portfolio_weights(
    context: AssetExecutionContext,
    config: PortfolioConfig,
    signals: pl.DataFrame,
    market_prices: pl.DataFrame,
    universe: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """Target weights ``[strategy, date, symbol, weight, kind]`` on rebalance dates of the
    out-of-sample period (``oos``), the ML book's grid of variants (``variant``, trials for the
    strategy table) and today's ML book (``live``). Optimisers are skfolio's. Every book picks
    from the investable universe only (the screened rows of the panel; an optimiser takes a
    name whose every day of its look-back window was investable)."""
    market_prices = investable(without_stale_days(market_prices, universe), universe)
    oos = signals.filter(pl.col("kind") == "oos")
    if config.start_date is not None:
        oos = oos.filter(pl.col("date") >= date.fromisoformat(config.start_date))

    def progress(book: str, done: int, total: int) -> None:
        if done % max(1, total // 10) == 0:  # every tenth of the way: hundreds of problems
            context.log.info(f"{book}: rebalance {done + 1}/{total}")

    built = portfolio_books(
        config.strategies,
        oos,
        signals.filter(pl.col("kind") == "live"),
        market_prices,
        config.spec(),
        **keyword_settings(config, portfolio_books),
        progress=progress,
    )
    frame, seconds = built.weights, built.seconds
    exposure_png = png_bytes(cluster_exposure_map(built.exposure))
    return Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "clusters": table(
                built.clusters.group_by("cluster")
                .agg(pl.col("symbol").sort())
                .sort("cluster")
                .with_columns(pl.col("symbol").list.join(", "))
            ),
            "cluster_exposure": image(exposure_png, "mean net weight per correlation cluster"),
            "cluster_exposure_table": table(built.exposure),
            "rebalances": built.rebalances,
            "strategies": ", ".join(config.strategies),
            "seconds_per_book": table(
                pl.DataFrame({"book": list(seconds), "seconds": list(seconds.values())})
            ),
            "variants": built.variants,
            "live_book": table(frame.filter(pl.col("kind") == "live").select("symbol", "weight")),
        },
    )


@asset(group_name="portfolio", kinds={"python"}, io_manager_key="lake")
def cost_model(
    config: BacktestConfig, market_prices: pl.DataFrame, universe: pl.DataFrame
) -> Output[CostModel]:
    """What trading costs and how every book trades, built once for the seed strategies and
    the backtest: returns on trading days (market-wide stale days, a closed day filled with
    the previous closes, are none), proportional buy and sell costs, square-root impact where
    volume exists, the forecast half-spread where OHLC exists, the signal-to-trade lag, the
    fill and the no-trade band (``models.backtest.engine.cost_model``)."""
    model = build_cost_model(config, without_stale_days(market_prices, universe))
    return Output(
        model,
        metadata={**model.describe(), "has": MetadataValue.json(model.has)},
    )


@asset(group_name="portfolio", kinds={"polars", "mlflow"}, io_manager_key="lake")
def backtest(
    context: AssetExecutionContext,
    portfolio_weights: pl.DataFrame,
    seed_strategies: pl.DataFrame,
    cost_model: CostModel,
    universe: pl.DataFrame,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[pl.DataFrame]:
    """Daily ``[strategy, role, date, gross, commission, spread, impact, borrow, cost, net,
    turnover]`` of every strategy (``role`` = ``strategy``) and variant (``variant``) over the
    out-of-sample period: traded ``lag`` days after the signal, with proportional costs, half
    the forecast bid-ask spread and square-root market impact (where OHLCV exists) and
    borrowing on shorts. Every book's targets are screened: a name the universe excludes on a
    rebalance date is not bought, its side's weight going to the rest; market-wide stale days
    (a closed day filled with the previous closes) are no trading days."""
    targets = pl.concat([portfolio_weights, seed_strategies]).filter(pl.col("kind") != "live")
    books = screen_weights(targets, universe)
    daily = pl.concat(
        cost_model.run(w.drop("strategy", "kind")).with_columns(
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
    summary = performance_frame(
        [
            {"strategy": name, **performance(p["net"].to_numpy(), p["turnover"].to_numpy())}
            for (name,), p in main.group_by("strategy", maintain_order=True)
        ]
    )
    equity, drawdown = png_bytes(equity_curves(main)), png_bytes(drawdown_curves(main))
    paths = [reports.write("equity_curve.png", equity), reports.write("drawdowns.png", drawdown)]
    with tracker.asset_run(context) as run:
        run.log_params(dict(cost_model.settings))
        for row in summary.to_dicts():
            run.log_metrics(
                {
                    f"{row['strategy']}_{k}": v
                    for k, v in row.items()
                    if k != "strategy" and v is not None
                }
            )
        for path in paths:
            run.log_artifact(str(path))
    return Output(
        daily,
        metadata={
            **frame_metadata(daily),
            "performance": table(summary),
            **cost_model.describe(),
            "targets_screened_out": len(targets) - len(books),
            "equity_curve": image(equity, "equity curve"),
            "drawdowns": image(drawdown, "drawdowns"),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
    )


def performance_frame(rows: list[dict]) -> pl.DataFrame:
    """One row per book of :func:`models.backtest.engine.performance` figures, each a Float64 and
    every non-finite figure null: one book's odd figure must not type the column as
    ``object`` (polars then fails to find a supertype of f64 and object)."""
    if not rows:
        return pl.DataFrame(schema={"strategy": pl.String})
    schema = {"strategy": pl.String, **{k: pl.Float64 for k in rows[0] if k != "strategy"}}
    frame = pl.DataFrame(
        [{k: _figure(v) if k != "strategy" else v for k, v in row.items()} for row in rows],
        schema=schema,
    )
    return frame.with_columns(pl.col(pl.Float64).fill_nan(None))


def _figure(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):  # complex, None, or anything else that is not a figure
        return None
    return value if np.isfinite(value) else None


class StrategyTableConfig(Config):
    prior_trials: int = Field(
        default=0,
        description="Book configurations tried on these data before this run (by hand, in "
        "earlier runs): counted as trials by the deflated Sharpe ratio.",
    )
    benchmark: str = Field(
        default="equal_weight",
        description="The book every excess return and information ratio is measured over.",
    )


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
    config: StrategyTableConfig,
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
    frame, pbo = build_strategy_table(
        main,
        variants,
        extra_trials=optuna_trials + config.prior_trials,
        benchmark=config.benchmark,
    )
    leaks = strategy_leaks(frame)
    png = png_bytes(logit_histogram(pbo.logits, pbo.pbo))
    path = reports.write("pbo_logits.png", png)
    reports.write("strategy_table.md", to_markdown(frame, ".3f"))
    with tracker.asset_run(context) as parent:
        parent.log_metrics(
            {"pbo": pbo.pbo, "prob_oos_loss": pbo.prob_oos_loss, "n_trials": frame["n_trials"][0]}
        )
        parent.log_artifact(str(path))
        best = frame.sort("sharpe", descending=True, nulls_last=True).row(0, named=True)
        tracker.log_headline(
            context,
            {"best_net_sharpe": best["sharpe"], "best_net_sharpe_dsr": best["dsr"], "pbo": pbo.pbo},
        )
        for row in frame.to_dicts():  # one MLflow run per strategy, comparable side by side
            with parent.nested(f"strategy {row['strategy']}", {"strategy": row["strategy"]}) as run:
                run.log_metrics(
                    {
                        k: float(v)
                        for k, v in row.items()
                        if k != "strategy" and v is not None and np.isfinite(v)
                    }
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
            "mlflow_run": MetadataValue.url(tracker.run_url(parent.run_id)),
        },
    )
    yield AssetCheckResult(
        check_name="check_strategy_table_plausible",
        passed=not leaks,
        severity=AssetCheckSeverity.ERROR,
        description=f"net Sharpe <= {MAX_STRATEGY_SHARPE} for every strategy",
        metadata={"suspects": "; ".join(f"{x.where}: {x.detail}" for x in leaks) or "none"},
    )
