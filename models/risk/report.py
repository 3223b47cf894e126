"""The nightly risk report: VaR and ES of every strategy's out-of-sample net returns by every
method, the VaR backtest's coverage, and today's book under stress (historical episodes,
hypothetical market and volatility shocks, Monte Carlo over generated scenarios), with the most
unusual asset-days; as frames, markdown and JSON."""

import json
from dataclasses import dataclass
from datetime import date

import polars as pl

from models.backtest.engine import performance
from models.data.panel import daily_returns
from models.reporting.html import to_markdown
from models.risk.scenarios import scenario_var
from models.risk.stress import hypothetical_shocks, stress_test
from models.risk.var import var_table
from models.risk.var_backtest import coverage_table


@dataclass(frozen=True)
class RiskReport:
    var: pl.DataFrame  # [strategy, horizon_days, method, level, var, es, note]
    coverage: pl.DataFrame  # the VaR backtest's exceptions against the expected number
    stress: pl.DataFrame  # today's book through each historical episode
    shocks: pl.DataFrame  # hypothetical market and volatility shocks
    scenario: pl.DataFrame  # Monte Carlo VaR over the generated scenarios
    scenario_reason: str  # which generator made them, and why
    performance: pl.DataFrame  # every strategy's out-of-sample figures
    flagged: pl.DataFrame  # the most unusual asset-days lately

    def lake(self) -> dict:
        """What the lake keeps of it (the keys the downstream assets read)."""
        return {
            "var": self.var,
            "var_backtest": self.coverage,
            "stress": self.stress,
            "shocks": self.shocks,
            "scenario_var": self.scenario,
            "scenario_source": self.scenario_reason,
            "performance": self.performance,
        }


def risk_report(
    backtest: pl.DataFrame,
    live: pl.DataFrame,
    prices: pl.DataFrame,
    benchmark: pl.DataFrame,
    var_backtest: pl.DataFrame,
    anomalies: pl.DataFrame,
    scenarios: dict,
    *,
    levels: list[float],
    horizons: list[int],
    methods: list[str],
    stress_episodes: dict[str, tuple[str, str]],
) -> RiskReport:
    """``backtest``: the strategies' daily ``[strategy, date, net, ...]``; ``live``: today's
    book ``[symbol, weight]``; ``benchmark``: the index ``[date, value]``; ``scenarios``: the
    generated windows (``windows``, ``symbols``, ``source``, ``reason``); ``anomalies``: the
    scored asset-days; ``stress_episodes``: name to ISO start and end dates."""
    var = pl.concat(
        var_table(p["net"].to_numpy(), levels, horizons, methods)
        .with_columns(strategy=pl.lit(name))
        .select("strategy", "horizon_days", "method", "level", "var", "es", "note")
        for (name,), p in backtest.group_by("strategy", maintain_order=True)
    )
    index = benchmark.select("date", pl.col("value").alias("close"), symbol=pl.lit("SP500"))
    episodes = {
        name: (date.fromisoformat(a), date.fromisoformat(b))
        for name, (a, b) in stress_episodes.items()
    }
    book = dict(zip(live["symbol"], live["weight"], strict=True))
    stress = stress_test(book, prices, episodes, benchmark=index)
    shocks = hypothetical_shocks(
        book,
        daily_returns(prices),
        daily_returns(index).select("date", "ret"),
        level=max(levels),
    )
    scenario = scenario_var(
        scenarios["windows"],
        scenarios["symbols"],
        book,
        levels,
        sorted({1, scenarios["windows"].shape[1]}),
    ).with_columns(source=pl.lit(scenarios["source"]))
    perf = pl.DataFrame(
        [
            {"strategy": name, **performance(p["net"].to_numpy())}
            for (name,), p in backtest.group_by("strategy", maintain_order=True)
        ]
    )
    flagged = anomalies.filter(pl.col("anomaly")).sort("score", descending=True).head(15)
    return RiskReport(
        var,
        coverage_table(var_backtest),
        stress,
        shocks,
        scenario,
        scenarios["reason"],
        perf,
        flagged,
    )


def risk_json(report: RiskReport) -> str:
    return json.dumps(
        {
            "var": report.var.to_dicts(),
            "var_backtest": report.coverage.to_dicts(),
            "shocks": report.shocks.to_dicts(),
            "scenario_var": report.scenario.to_dicts(),
            "stress": report.stress.with_columns(pl.col("start", "end").cast(pl.String)).to_dicts(),
            "performance": report.performance.to_dicts(),
            "anomalies": report.flagged.with_columns(pl.col("date").cast(pl.String)).to_dicts(),
        },
        indent=2,
    )


def risk_markdown(report: RiskReport, live: pl.DataFrame, run_id: str) -> str:
    flagged = report.flagged
    return (
        "\n\n".join(
            [
                "# AlphaForge risk report",
                f"Dagster run `{run_id}`. Every figure below is out-of-sample and net of costs. "
                "The bundled universe is today's S&P 500 names: survivorship bias flatters the results.",
                "## Strategy performance (out-of-sample)",
                to_markdown(report.performance),
                "![equity curves](equity_curve.png)",
                "## Value at risk and expected shortfall (loss as a fraction of value)",
                to_markdown(report.var),
                "## VaR backtest: rolling one-day-ahead forecasts of the assessed strategy",
                to_markdown(report.coverage, ".3f"),
                "![returns vs VaR](var_backtest.png)",
                "## Stress test: today's book replayed through historical episodes",
                to_markdown(report.stress),
                "## Hypothetical shocks through today's book's exposures",
                to_markdown(report.shocks),
                f"## Monte Carlo VaR of today's book over generated scenarios ({report.scenario_reason})",
                to_markdown(report.scenario),
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
