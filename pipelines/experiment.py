"""One experiment file: a typed, validated YAML that drives the whole pipeline.

Layers, later ones winning: the built-in profile (``fast`` or ``full``), the experiment file,
environment variables, then CLI flags. Every leaf remembers which layer set it
(``alphaforge config show``). The file is validated as a whole before anything runs: every
error names its key path, the bad value and what was expected, all at once, and unknown keys get
a "did you mean". Secrets never live in the file: a value may be a reference ``${env:VAR}``,
resolved only when resources are built and never logged resolved.

A field that reaches assets names them where it is declared (``_to("asset.field", ...)``); its
default and description come from that asset's ``Config`` class, and the routes (``ROUTES``)
are read off the declarations, so there is one source of truth for them.
"""

import difflib
import itertools
import json
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from assets._config import SPREAD_SOURCES, BacktestConfig
from assets.explain import ShapConfig
from assets.features import FeaturesConfig, LabelsConfig
from assets.ingest import PanelConfig, PricesConfig, UniverseConfig
from assets.microstructure import (
    LobFeaturesConfig,
    LobImpactConfig,
    LobIngestConfig,
    LobLabelsConfig,
    LobModelsConfig,
)
from assets.portfolio import STRATEGIES, PortfolioConfig, StrategyTableConfig
from assets.risk import (
    AnomalyConfig,
    CorrelationConfig,
    RiskConfig,
    ScenarioConfig,
    VarBacktestConfig,
)
from assets.strategies import SEED_STRATEGIES, SeedConfig
from assets.training import EnsembleConfig, OOFConfig, TrainingConfig
from models.features import FEATURE_SETS, REGISTRY, spec
from models.learning.estimators import MODEL_SPECS, STATISTICAL_MODELS
from models.learning.label_transforms import LABEL_TRANSFORMS
from models.learning.labels import LABEL_KINDS
from models.learning.objectives import OBJECTIVES
from models.risk.stress import STRESS_EPISODES
from models.risk.var import METHODS

ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
# An experiment is a page of settings: a file larger than this is refused before it is parsed,
# and a value quoted in a message is cut to this many characters.
MAX_FILE_BYTES = 2**20
MAX_SHOWN = 200
# query parameters that carry a credential (libpq and SQLAlchemy take ?password=)
SECRET_PARAMS = {"password", "passwd", "pwd", "pass", "secret", "token", "access_token",
                 "api_key", "apikey", "key", "sig", "signature"}  # fmt: skip
# mappings that are values, not sections
WHOLE = ("columns", "stress_episodes", "lob_daily_columns", "lob_daily_symbols", "dead_zones_bp")
ENV_PREFIX = "ALPHAFORGE__"  # ALPHAFORGE__MODELS__N_TRIALS=5 overrides models.n_trials
BUNDLED_LAST_DATE = date(2022, 12, 28)


# Each asset that takes settings, and its Config class: a setting of the experiment names the
# asset fields it goes to (``_to``), and its default and description are that Config's.
ASSET_CONFIGS: dict[str, type] = {
    "price_history": PricesConfig,
    "market_prices": PanelConfig,
    "universe": UniverseConfig,
    "feature_matrix": FeaturesConfig,
    "labels": LabelsConfig,
    "base_models": TrainingConfig,
    "oof_predictions": OOFConfig,
    "ensemble_model": EnsembleConfig,
    "portfolio_weights": PortfolioConfig,
    "seed_strategies": SeedConfig,
    "cost_model": BacktestConfig,
    "strategy_table": StrategyTableConfig,
    "risk_report": RiskConfig,
    "var_backtest": VarBacktestConfig,
    "stress_scenarios": ScenarioConfig,
    "correlation_forecasts": CorrelationConfig,
    "return_anomalies": AnomalyConfig,
    "shap_explanations": ShapConfig,
    "lob_events": LobIngestConfig,
    "lob_features": LobFeaturesConfig,
    "lob_labels": LobLabelsConfig,
    "lob_models": LobModelsConfig,
    "lob_impact": LobImpactConfig,
}


def _to(*targets: str, **field: Any) -> Any:
    """A setting that goes to the asset fields ``targets`` (``"asset.field"``; several when
    more than one asset reads it: the cost fields, top_k, the seed), with the first one's
    default and description, plus bounds (``ge``, ``lt``, ...) that the experiment checks
    before anything runs. Every target must exist and share the first one's default: a
    shared setting cannot drift apart between the assets that read it."""
    specs = []
    for target in targets:
        asset, name = target.split(".")
        fields = ASSET_CONFIGS[asset].model_fields
        if name not in fields:
            raise AttributeError(f"{ASSET_CONFIGS[asset].__name__} has no field {name!r}")
        specs.append(fields[name])
    first = specs[0]
    defaults = {repr(s.get_default(call_default_factory=True)) for s in specs}
    if len(defaults) > 1:
        raise ValueError(f"the fields {targets} have different defaults: {sorted(defaults)}")
    field.setdefault("description", first.description)
    if "default" not in field and "default_factory" not in field:
        if first.default_factory is not None:
            field["default_factory"] = first.default_factory
        else:
            field["default"] = first.default
    return Field(**field, json_schema_extra={"routes": list(targets)})


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSection(Section):
    source: Literal["bundled", "files", "http"] = Field(
        "bundled", description="Bundled package data, your own files, or a vendor's HTTP API."
    )
    path: str | None = Field(
        None,
        description="Path or glob of price files (CSV, CSV.gz, Parquet) when source is 'files'.",
    )
    root: str | None = Field(
        None,
        description="Every data file (prices, sector map, texts) must resolve inside this "
        "folder; default: the folder of data.path.",
    )
    max_file_mb: int = Field(
        1024,
        ge=1,
        description="Refuse a price file (or a gzip's uncompressed content) larger than this.",
    )
    texts: str | None = Field(
        None,
        description="CSV of dated text (date,ticker,text; empty ticker = market-wide) scored "
        "with the Loughran-McDonald dictionary into news_sentiment.",
    )
    url: str | None = Field(
        None,
        description="http source: URL template with {symbol} (and {api_key}), one CSV per symbol.",
    )
    api_key: str | None = Field(
        None, description="http source: the vendor's key, as a reference ${env:VAR}."
    )
    columns: dict[
        Literal["symbol", "date", "open", "high", "low", "close", "volume", "split", "dividend"],
        str,
    ] = Field(default_factory=dict, description="Our column name -> the file's column name.")
    symbol_from_filename: bool = Field(
        False, description="Per-ticker files: the file name gives the symbol."
    )
    sectors: str | None = Field(
        None,
        description="CSV with symbol and sector columns (files source; bundled data has its own).",
    )
    universe: list[str] | None = _to("price_history.symbols")
    start_date: date = _to("price_history.start_date", default=date(1990, 1, 1))
    end_date: date | None = _to("price_history.end_date", default=None)
    max_quarantine_share: float = _to("price_history.max_quarantine_share", ge=0, le=1)
    daily_from: date = _to("price_history.daily_from", default=date(2022, 12, 1))
    max_gap_days: int = _to("market_prices.max_gap_days", "labels.max_gap_days", ge=1)
    stale_run: int = _to("market_prices.stale_run", ge=2)
    max_age_days: int | None = _to("market_prices.max_age_days", ge=0)
    lob: str | None = Field(
        None,
        description="Folder or glob of LOBSTER message/order-book files (.csv or .csv.gz, any "
        "depth; ticker, day and depth from the names): the microstructure group runs on them, "
        "one partition per ticker-day. None: the group is skipped.",
    )
    lob_depth: int | None = Field(
        None, ge=1, description="With several depths of one ticker-day, ingest this one "
        "(none: the deepest).",
    )  # fmt: skip
    lob_daily_bars: str | None = Field(
        None,
        description="Daily OHLCV files of the LOB tickers, a path with {symbol} (e.g. "
        ".../sp500-alphavantage/{symbol}.csv.gz): the Corwin-Schultz comparison and the daily "
        "volatility and volume of the square-root impact law.",
    )
    lob_daily_columns: dict[
        Literal["symbol", "date", "open", "high", "low", "close", "volume"], str
    ] = Field(default_factory=dict, description="Our column name -> the daily files' name.")
    lob_daily_symbols: dict[str, str] = Field(
        default_factory=dict,
        description="LOB ticker -> the daily files' symbol where a name changed (LOBSTER's "
        "2012 GOOG is today's GOOGL).",
    )


class MicrostructureSection(Section):
    tick: float = _to("lob_events.tick", gt=0)
    levels: int = _to("lob_features.levels", ge=1)
    ofi_windows: list[int] = _to("lob_features.ofi_windows", min_length=1)
    trade_windows: list[int] = _to("lob_features.trade_windows", min_length=1)
    rate_windows_s: list[int] = _to("lob_features.rate_windows_s", min_length=1)
    vol_windows_s: list[int] = _to("lob_features.vol_windows_s", min_length=1)
    kyle_trades: int = _to("lob_features.kyle_trades", ge=2)
    clocks_s: list[int] = _to("lob_features.clocks_s", min_length=1)
    horizons: list[str] = _to("lob_labels.horizons", min_length=1)
    ticker: str | None = _to("lob_models.ticker")
    models: list[Literal["majority", "persistence", "cks_ofi", "lightgbm", "deeplob"]] = _to(
        "lob_models.models", min_length=1
    )
    train_fraction: float = _to("lob_models.train_fraction", gt=0, lt=1)
    valid_fraction: float = _to("lob_models.valid_fraction", gt=0, lt=1)
    stationary_share: float = _to("lob_models.stationary_share", gt=0, lt=1)
    dead_zones_bp: dict[str, float] = _to("lob_models.dead_zones_bp")
    serve_horizon: str = _to("lob_models.serve_horizon")
    deeplob_epochs: int = _to("lob_models.deeplob_epochs", ge=1)
    deeplob_windows: int = _to("lob_models.deeplob_windows", ge=100)
    deeplob_threads: int = _to("lob_models.deeplob_threads", ge=1)
    impact_interval_s: int = _to("lob_impact.interval_s", ge=1)
    impact_train_fraction: float = _to("lob_impact.train_fraction", gt=0, lt=1)

    @field_validator("horizons")
    @classmethod
    def _horizons(cls, value: list[str]) -> list[str]:
        bad = [h for h in value if not re.fullmatch(r"[ks][1-9][0-9]*", h)]
        if bad:
            raise ValueError(f"horizons {bad}: each is k<events> or s<seconds>, e.g. k50, s10")
        return value


class UniverseSection(Section):
    """The investable-universe screen (the ``universe`` asset): what models train on and books
    may hold."""

    min_price: float = _to("universe.min_price", ge=0)
    min_dollar_volume: float = _to("universe.min_dollar_volume", ge=0)
    volume_window: int = _to("universe.volume_window", ge=1)
    min_history: int = _to("universe.min_history", ge=0)
    stale_run: int = _to("universe.stale_run", ge=2)
    finding_days: int = _to("universe.finding_days", ge=0)
    stale_day_share: float = _to("universe.stale_day_share", gt=0, le=1)


class FeaturesSection(Section):
    set: Literal[FEATURE_SETS] = _to("feature_matrix.feature_set")
    names: list[str] = _to("feature_matrix.names")
    windows: list[int] = _to("feature_matrix.windows")
    cs_rank: list[str] = _to("feature_matrix.cs_rank")
    cs_zscore: list[str] = _to("feature_matrix.cs_zscore")
    winsorize: float | None = _to("feature_matrix.winsorize", default=None, gt=0, lt=0.5)
    sector_neutral: list[str] = _to("feature_matrix.sector_neutral")
    statistical: bool = _to("feature_matrix.statistical")
    dtype: Literal["float32", "float64"] = _to("feature_matrix.dtype")

    @field_validator("windows")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if not value or min(value) < 2:
            raise ValueError("windows must be a non-empty list of integers >= 2")
        return value


class LabelsSection(Section):
    kind: Literal[LABEL_KINDS] = _to("labels.kind")
    barrier_k: float = _to("labels.barrier_k", gt=0)
    vol_window: int = _to("labels.vol_window", ge=2)
    horizon: int = _to("labels.horizon", ge=1)
    skip: int = _to("labels.skip", ge=0)
    match_rebalance: bool = Field(
        False,
        description="Set the label horizon to portfolio.rebalance_every (the books then hold "
        "each forecast for the horizon it was trained on).",
    )
    transform: Literal[LABEL_TRANSFORMS] = _to("labels.transform")
    target: Literal["rank", "raw"] = _to("base_models.target")


class CVSection(Section):
    tune_fraction: float = _to("base_models.tune_fraction", ge=0.1, le=0.9)
    inner_splits: int = _to("base_models.inner_splits", ge=2)
    outer_splits: int = _to("oof_predictions.outer_splits", "base_models.outer_splits", ge=2)
    scheme: Literal["walk_forward", "cpcv"] = _to("base_models.cv_scheme")
    test_days: int = _to("base_models.test_days", ge=5)


class ModelsSection(Section):
    names: list[str] = _to("base_models.models")
    n_trials: int = _to("base_models.n_trials", ge=1)
    seed: int = _to("base_models.seed", "seed_strategies.seed", "lob_models.seed")
    n_jobs: int = _to("base_models.n_jobs", "lob_models.n_jobs", ge=1)
    workers: int = _to("base_models.workers", ge=1)
    objective: Literal[OBJECTIVES] = _to("base_models.objective")
    engine: Literal["local", "dask"] = _to("base_models.engine")
    dask_scheduler: str | None = Field(
        None,
        description="engine dask: the scheduler's address (tcp://host:8786), as a reference "
        "such as ${env:ALPHAFORGE_DASK_SCHEDULER}; none = a local cluster on this machine.",
    )
    dask_workers: int = Field(
        2, ge=1, description="engine dask, local cluster: worker processes (one thread each)."
    )
    dask_dashboard: str | None = Field(
        "127.0.0.1:8787",
        description="engine dask, local cluster: the Dask dashboard's address (loopback by "
        "default; none turns it off).",
    )


class EnsembleSection(Section):
    meta_learner: Literal["positive_linear", "ridge", "lightgbm"] = _to(
        "ensemble_model.meta_learner"
    )
    promotion_margin: float = _to("ensemble_model.promotion_margin", ge=0)
    min_test_rank_ic: float = _to("ensemble_model.min_test_rank_ic", ge=-1, le=1)
    min_test_rank_ic_t: float = _to("ensemble_model.min_test_rank_ic_t")
    max_champion_age_days: float = _to("ensemble_model.max_champion_age_days", gt=0)


class PortfolioSection(Section):
    top_k: int = _to(
        "portfolio_weights.top_k", "seed_strategies.top_k", "base_models.book_top_k", ge=1
    )
    rebalance_every: int = _to(
        "portfolio_weights.rebalance_every",
        "seed_strategies.rebalance_every",
        "base_models.book_every",
        ge=1,
    )
    optimise_every: int | None = _to("portfolio_weights.optimise_every", default=None, ge=1)
    hrp_lookback: int = _to("portfolio_weights.hrp_lookback", ge=20)
    strategies: list[Literal[STRATEGIES]] = _to("portfolio_weights.strategies", min_length=1)
    ic: float = _to("portfolio_weights.ic", gt=0, lt=1)
    risk_aversion: float = _to("portfolio_weights.risk_aversion", gt=0)
    max_weight: float = _to("portfolio_weights.max_weight", gt=0, le=1)
    max_turnover: float | None = _to("portfolio_weights.max_turnover", default=None, gt=0)
    n_clusters: int = _to("portfolio_weights.n_clusters", ge=2)
    max_cluster_weight: float | None = _to(
        "portfolio_weights.max_cluster_weight", default=None, gt=0, le=1
    )
    seed_strategies: list[Literal[SEED_STRATEGIES]] = _to("seed_strategies.strategies")
    seed_refit_every: int = _to("seed_strategies.refit_every", ge=21)
    net_epochs: int = _to("seed_strategies.net_epochs", ge=1)
    n_pairs: int = _to("seed_strategies.n_pairs", ge=1)
    pairs_reform_every: int = _to("seed_strategies.pairs_reform_every", ge=21)
    rl_timesteps: int = _to("seed_strategies.rl_timesteps", ge=100)
    ga_population: int = _to("seed_strategies.ga_population", ge=2)
    ga_generations: int = _to("seed_strategies.ga_generations", ge=0)
    ga_selection: float = _to("seed_strategies.ga_selection", gt=0, lt=1)
    variant_top_k: list[int] = _to("portfolio_weights.variant_top_k", min_length=1)
    variant_every: list[int] = _to("portfolio_weights.variant_every", min_length=1)
    cost_bps: float = _to(
        "cost_model.cost_bps", "portfolio_weights.cost_bps", "base_models.cost_bps", ge=0
    )
    lag: int = _to("cost_model.lag", ge=0)
    fill: Literal["close", "open"] = _to("cost_model.fill")
    impact_coef: float = _to("cost_model.impact_coef", ge=0)
    capital: float = _to("cost_model.capital", gt=0)
    borrow_bps: float = _to("cost_model.borrow_bps", ge=0)
    sell_cost_bps: float | None = _to(
        "cost_model.sell_cost_bps",
        "portfolio_weights.sell_cost_bps",
        "base_models.sell_cost_bps",
        default=None,
        ge=0,
    )
    costs: Literal[SPREAD_SOURCES] = _to(
        "cost_model.costs", "portfolio_weights.costs", "base_models.costs"
    )
    spread_floor_bps: float = _to(
        "cost_model.spread_floor_bps",
        "portfolio_weights.spread_floor_bps",
        "base_models.spread_floor_bps",
        ge=0,
    )
    spread_cap_bps: float = _to(
        "cost_model.spread_cap_bps",
        "portfolio_weights.spread_cap_bps",
        "base_models.spread_cap_bps",
        gt=0,
    )
    no_trade_band: float = _to("cost_model.no_trade_band", ge=0, lt=1)
    turnover_k: int | None = _to("portfolio_weights.turnover_k", default=None, ge=1)
    dropout_n: int = _to("portfolio_weights.dropout_n", ge=0)
    hold_buffer: int = _to("portfolio_weights.hold_buffer", ge=0)
    smooth_halflife: float = _to("portfolio_weights.smooth_halflife", ge=0)
    cost_aversion: float = _to("portfolio_weights.cost_aversion", ge=0)
    start_date: date | None = _to("portfolio_weights.start_date", default=None)
    prior_trials: int = _to("strategy_table.prior_trials", ge=0)
    benchmark: Literal[STRATEGIES] = _to("strategy_table.benchmark")


class RiskSection(Section):
    levels: list[float] = _to("risk_report.levels", "var_backtest.levels")
    horizons: list[int] = _to("risk_report.horizons")
    strategy: Literal[STRATEGIES] = _to(
        "risk_report.strategy", "var_backtest.strategy", "correlation_forecasts.strategy"
    )
    methods: list[Literal[METHODS]] = _to("risk_report.methods", "var_backtest.methods")
    var_window: int = _to("var_backtest.window", ge=60)
    var_refit_every: int = _to("var_backtest.refit_every", ge=1)
    scenario_length: int = _to("stress_scenarios.length", ge=1, le=250)
    scenarios: int = _to("stress_scenarios.n_scenarios", ge=100)
    scenario_history_days: int = _to("stress_scenarios.history_days", ge=250)
    scenario_max_assets: int = _to("stress_scenarios.max_assets", ge=2, le=200)
    gan: bool = _to("stress_scenarios.gan")
    gan_steps: int = _to("stress_scenarios.gan_steps", ge=1)
    correlation_test_days: int = _to("correlation_forecasts.test_days", ge=60)
    correlation_horizon: int = _to("correlation_forecasts.horizon", ge=5)
    stress_episodes: dict[str, tuple[date, date]] = _to(
        "risk_report.stress_episodes", default_factory=lambda: dict(STRESS_EPISODES)
    )

    anomaly_days: int = _to("return_anomalies.days", ge=5)
    anomaly_contamination: float = _to("return_anomalies.contamination", gt=0, lt=0.5)

    @field_validator("stress_episodes")
    @classmethod
    def _episodes(cls, value: dict[str, tuple[date, date]]) -> dict[str, tuple[date, date]]:
        for name, (start, end) in value.items():
            if end <= start:
                raise ValueError(f"episode {name!r} ends ({end}) before it starts ({start})")
        return value

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: list[float]) -> list[float]:
        if not value or not all(0.5 < v < 1 for v in value):
            raise ValueError("levels must lie strictly between 0.5 and 1 (e.g. 0.95, 0.99)")
        return value


class ExplainSection(Section):
    model: str = _to("shap_explanations.model")
    n_rows: int = _to("shap_explanations.n_rows", ge=10)


class ScheduleSection(Section):
    cron: str = Field(
        "30 18 * * 1-5", description="Nightly schedule (cron), weekdays after the US close."
    )
    timezone: str = Field("America/New_York", description="IANA timezone of the cron expression.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from dagster._utils.schedules import is_valid_cron_string

        if not is_valid_cron_string(value):
            raise ValueError("not a valid cron expression (five fields, e.g. '30 18 * * 1-5')")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a known IANA timezone (e.g. 'America/New_York')") from None
        return value


class TrackingSection(Section):
    experiment: str = Field("alphaforge", description="MLflow experiment name.")
    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking URI; none = SQLite in ALPHAFORGE_HOME. May use ${env:VAR}.",
    )
    optuna_storage: str | None = Field(
        None,
        description="Optuna storage URL; none = SQLite in ALPHAFORGE_HOME. May use ${env:VAR}.",
    )


class Experiment(Section):
    """The whole experiment. Every section is optional; what is left out keeps its default."""

    profile: Literal["fast", "full"] = Field(
        "full", description="Built-in profile the file starts from."
    )
    data: DataSection = DataSection()
    universe: UniverseSection = UniverseSection()
    features: FeaturesSection = FeaturesSection()
    labels: LabelsSection = LabelsSection()
    cv: CVSection = CVSection()
    models: ModelsSection = ModelsSection()
    ensemble: EnsembleSection = EnsembleSection()
    portfolio: PortfolioSection = PortfolioSection()
    risk: RiskSection = RiskSection()
    explain: ExplainSection = ExplainSection()
    microstructure: MicrostructureSection = MicrostructureSection()
    schedule: ScheduleSection = ScheduleSection()
    tracking: TrackingSection = TrackingSection()


# The built-in profiles, experiment-shaped. `full` is the defaults above (the nightly job).
PROFILES: dict[str, dict[str, Any]] = {
    "full": {},
    "fast": {
        "data": {"start_date": "2007-01-01"},
        # a first run a newcomer waits a minute for: four trials per model, three outer folds
        "models": {"n_trials": 4},
        "cv": {"inner_splits": 3, "outer_splits": 3},
        "explain": {"n_rows": 500},
        # a monthly optimiser rebalance: 70 instead of 300 convex problems per book
        # the seed strategies' nets and DQN refitted every two years, with fewer steps
        "portfolio": {
            "optimise_every": 21,
            "seed_refit_every": 504,
            "net_epochs": 2,
            "pairs_reform_every": 252,
            "rl_timesteps": 800,
            "ga_population": 6,
            "ga_generations": 2,
        },
        # scenarios from the bootstrap only (the full profile and the weekly rebuild train the
        # GAN), VaR refits every 250 days instead of 20, correlation forecasts scored on the
        # last 500 days instead of 750
        "risk": {"gan": False, "var_refit_every": 250, "correlation_test_days": 500},
    },
}


# experiment (section, key) -> (asset, Config field)
def _routes() -> dict[tuple[str, str], tuple[tuple[str, str], ...]]:
    """(section, key) -> the (asset, field) pairs it goes to, read off the sections' ``_to``
    fields."""
    out = {}
    for section, info in Experiment.model_fields.items():
        model = info.annotation
        if not (isinstance(model, type) and issubclass(model, Section)):
            continue
        for key, field_info in model.model_fields.items():
            extra = field_info.json_schema_extra or {}
            if "routes" in extra:
                out[(section, key)] = tuple(tuple(t.split(".")) for t in extra["routes"])
    return out


ROUTES = _routes()


class ExperimentError(ValueError):
    """Every problem of an experiment, one line each: key path, bad value, what was expected."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems[:50])
        if len(problems) > 50:
            listing += f"\n  ... and {len(problems) - 50} more"
        super().__init__(f"{source}: {len(problems)} problem(s), nothing was run:\n{listing}")


@dataclass
class Resolved:
    """A validated experiment and, for every leaf, the layer that set it."""

    experiment: Experiment
    origins: dict[str, str] = field(default_factory=dict)

    def run_config(self, assets: Collection[str] | None = None) -> dict[str, Any]:
        """Dagster run config: ``{"ops": {asset: {"config": {...}}}}``, for ``assets`` only
        when given (a job must not get config for ops it lacks)."""
        ops: dict[str, dict[str, Any]] = {}
        dumped = self.experiment.model_dump(mode="json")
        for (section, key), targets in ROUTES.items():
            for asset, name in targets:
                ops.setdefault(asset, {"config": {}})["config"][name] = dumped[section][key]
        ops["daily_prices"] = ops["price_history"]  # the daily ingest shares the history's Config
        # the order-book models and clock read the features' settings (the registered model
        # records how its inputs were built)
        lob = ops["lob_features"]["config"]
        ops["lob_clock_features"] = {"config": dict(lob)}
        ops["lob_models"]["config"] |= lob
        # the label horizon may follow the rebalance; the models purge by it (plus the skip)
        # and check every CV setting, the outer folds' too, before tuning; statistical
        # forecasts span it, and the models that read them turn them on
        if dumped["labels"]["match_rebalance"]:
            ops["labels"]["config"]["horizon"] = dumped["portfolio"]["rebalance_every"]
        # a label ends skip + horizon trading days after its row: that is what the folds purge
        ops["base_models"]["config"]["horizon"] = (
            ops["labels"]["config"]["horizon"] + dumped["labels"]["skip"]
        )
        features = ops["feature_matrix"]["config"]
        features["horizon"] = ops["labels"]["config"]["horizon"]
        if set(dumped["models"]["names"]) & set(STATISTICAL_MODELS):
            features["statistical"] = True
        return {"ops": {a: c for a, c in ops.items() if assets is None or a in assets}}

    def to_yaml(self) -> str:
        """The fully resolved experiment (``${env:...}`` references kept, never their values)."""
        return yaml.safe_dump(self.experiment.model_dump(mode="json"), sort_keys=False)

    def flat(self) -> dict[str, Any]:
        return flatten(self.experiment.model_dump(mode="json"))


def resolve(
    path: str | Path | None = None,
    *,
    profile: str | None = None,
    environ: Mapping[str, str] = os.environ,
    overrides: Mapping[str, str] | None = None,
    check_files: bool = True,
) -> Resolved:
    """Merge profile -> file -> environment -> CLI overrides, validate, return with origins.

    ``overrides`` are dotted keys (``models.n_trials``) to YAML scalars, as ``--set`` gives them.
    Raises :class:`ExperimentError` listing every problem.
    """
    layers: list[tuple[str, dict[str, Any]]] = []
    source = str(path) if path else "experiment"
    problems: list[str] = []
    file_data: dict[str, Any] = {}
    if path is not None:
        try:
            with Path(path).open("rb") as handle:
                text = handle.read(MAX_FILE_BYTES + 1)
                size = os.fstat(handle.fileno()).st_size
        except FileNotFoundError:
            raise ExperimentError(source, [f"file not found: {path}"]) from None
        if len(text) > MAX_FILE_BYTES:
            raise ExperimentError(
                source,
                [f"is larger than {MAX_FILE_BYTES // 2**20} MiB ({size / 2**20:.1f} MiB): "
                 "an experiment is a page of settings, not data"],
            )  # fmt: skip
        loaded = load_yaml(text.decode("utf-8", errors="replace"), source) or {}
        if not isinstance(loaded, dict):
            raise ExperimentError(
                source, [f"top level must be a mapping of sections, got {type(loaded).__name__}"]
            )
        file_data = loaded
    chosen = profile or environ.get("ALPHAFORGE_PROFILE") or file_data.get("profile") or "full"
    if chosen not in PROFILES:
        raise ExperimentError(
            source, [f"profile: {chosen!r} is not a profile; expected one of {sorted(PROFILES)}"]
        )
    layers.append((f"profile {chosen}", PROFILES[chosen]))
    if file_data:
        layers.append((f"file {path}", file_data))
    env_layer = _env_layer(environ)
    if not profile and environ.get("ALPHAFORGE_PROFILE"):
        env_layer["profile"] = chosen
    if env_layer:
        layers.append(("environment", env_layer))
    cli = {"profile": profile} if profile else {}
    for dotted, raw in (overrides or {}).items():
        value = load_yaml(raw, "command line") if isinstance(raw, str) else raw
        _set(cli, dotted.split("."), value)
    if cli:
        layers.append(("command line", cli))

    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name, layer in layers:
        _merge(merged, layer, origins, name, ())
    try:
        experiment = Experiment.model_validate(merged)
    except ValidationError as err:
        problems += [_describe(e, origins) for e in err.errors()]
        # Report the combinations too, all at once: judge them with the bad keys at defaults.
        repaired = _without(merged, [e["loc"] for e in err.errors()])
        try:
            reported = {p.split(":")[0] for p in problems}
            problems += [
                p
                for p in _cross_checks(Experiment.model_validate(repaired), check_files)
                if p.split(":")[0] not in reported
            ]
        except ValidationError:
            pass
        raise ExperimentError(source, problems) from None
    root = data_root(experiment.data)
    if root != experiment.data.root:  # files are always confined: by default to their folder
        experiment = experiment.model_copy(
            update={"data": experiment.data.model_copy(update={"root": root})}
        )
        origins["data.root"] = "derived from data.path"
    problems += _cross_checks(experiment, check_files)
    if problems:
        raise ExperimentError(source, problems)
    origins_all = {
        k: origins.get(k, "default") for k in flatten(experiment.model_dump(mode="json"))
    }
    for key in origins_all:  # a leaf inside a section set as a whole takes that section's origin
        if origins_all[key] == "default":
            parent = next((origins[p] for p in _parents(key) if p in origins), None)
            origins_all[key] = parent or "default"
    return Resolved(experiment, origins_all)


def resolve_env_refs(
    value: str | None, key: str, environ: Mapping[str, str] = os.environ
) -> str | None:
    """Replace ``${env:VAR}`` references at run time; a missing variable names the key."""
    if value is None:
        return None

    def lookup(match: re.Match) -> str:
        name = match.group(1)
        if name not in environ:
            raise ExperimentError(
                "experiment", [f"{key}: references ${{env:{name}}}, but {name} is not set"]
            )
        return environ[name]

    return ENV_REF.sub(lookup, value)


def as_secret(value: str | None, key: str, environ: Mapping[str, str] = os.environ):
    """How a setting that may hold a secret reaches a Dagster resource: a whole ``${env:VAR}``
    as ``dagster.EnvVar("VAR")`` (the UI and GraphQL show the name; Dagster reads the value in
    the run), a template with references as it is (the resource resolves it at run time), a
    plain value as it is. A reference to an unset variable is an error now, naming ``key``."""
    from dagster import EnvVar

    if value is None:
        return None
    resolve_env_refs(value, key, environ)  # every variable it names must be set
    whole = ENV_REF.fullmatch(value.strip())
    return EnvVar(whole.group(1)) if whole else value


def mlflow_uri(resolved: Resolved, default: str, environ: Mapping[str, str] = os.environ) -> str:
    """The experiment's tracking store (``${env:VAR}`` resolved), else ``default`` (the
    deployment's: the home's SQLite, or the prod tracking server)."""
    tracking = resolved.experiment.tracking.mlflow_uri
    return resolve_env_refs(tracking, "tracking.mlflow_uri", environ) or default


def show(resolved: Resolved) -> str:
    """Every leaf with its value and the layer it came from."""
    width = max(len(k) for k in resolved.origins)
    return "\n".join(
        f"{key:<{width}}  {json.dumps(value)}  ({resolved.origins[key]})"
        for key, value in resolved.flat().items()
    )


# --- internals ---------------------------------------------------------------------------


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    if environ.get("ALPHAFORGE_PRICES"):
        layer["data"] = {"source": "files", "path": environ["ALPHAFORGE_PRICES"]}
    for var, key in (
        ("ALPHAFORGE_MLFLOW_URI", "mlflow_uri"),
        ("ALPHAFORGE_OPTUNA_STORAGE", "optuna_storage"),
    ):
        if environ.get(var):  # by reference: the URI may hold a password, the experiment is logged
            layer.setdefault("tracking", {})[key] = f"${{env:{var}}}"
    for var, raw in environ.items():
        if var.startswith(ENV_PREFIX):
            keys = [p.lower() for p in var[len(ENV_PREFIX) :].split("__")]
            _set(layer, keys, load_yaml(raw, f"environment variable {var}"))
    return layer


def load_yaml(text: str, source: str) -> Any:
    """``text`` parsed with the safe loader, refusing anchors and aliases: the safe loader
    keeps an alias shared, but anything that walks the value (validation, a message quoting
    it) expands it, and nine aliases nested seven deep are 4.8 M strings (billion laughs)."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                mark = event.start_mark
                raise ExperimentError(
                    source,
                    [f"line {mark.line + 1}: YAML anchors and aliases (&, *) are not allowed "
                     "in an experiment; write each value out"],
                )  # fmt: skip
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ExperimentError(source, [f"not valid YAML: {_short(str(err), 600)}"]) from None


def _short(value: Any, limit: int = MAX_SHOWN) -> str:
    """``value`` as text (a string as it is, anything else as its repr) cut to ``limit``
    characters, saying how long it was."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def inline_secret(value: str) -> str | None:
    """Where ``value``, read as a URL, holds a credential in clear (not as ``${env:VAR}``): in
    its user part (``user:pw@``, also with an empty user) or a query parameter such as
    ``?password=``; None when it holds none."""
    if "://" not in value:
        return None
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return "not a valid URL"

    def clear(text: str | None) -> bool:
        return bool(text) and bool(ENV_REF.sub("", text).strip())

    if clear(password):
        return "in its user part"
    for name, item in parse_qsl(parts.query, keep_blank_values=True):
        if name.lower() in SECRET_PARAMS and clear(item) and item != "{api_key}":
            return f"{name}=…"
    return None


def data_root(data: "DataSection") -> str | None:
    """The folder every data file must lie in: ``data.root``, else the folder of ``data.path``
    (its part before any wildcard or ``{date}``)."""
    if data.root or not data.path:
        return data.root
    parts = Path(data.path).parts
    fixed = list(itertools.takewhile(lambda part: not any(c in part for c in "*?[{"), parts))
    folder = Path(*fixed) if fixed else Path(".")
    return str(folder.parent if len(fixed) == len(parts) else folder)


def _set(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = value


def _merge(
    into: dict, layer: Mapping, origins: dict[str, str], name: str, prefix: tuple[str, ...]
) -> None:
    for key, value in layer.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and isinstance(into.get(key), dict) and key not in WHOLE:
            _merge(into[key], value, origins, name, path)
        elif isinstance(value, Mapping) and key not in WHOLE:
            into[key] = {}
            _merge(into[key], value, origins, name, path)
        else:
            into[key] = value
            origins[".".join(path)] = name


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaves (``columns`` maps stay whole)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and key not in WHOLE:
            out |= flatten(value, dotted + ".")
        else:
            out[dotted] = value
    return out


def _parents(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def _without(tree: dict[str, Any], locs: list[tuple]) -> dict[str, Any]:
    """A deep copy of ``tree`` without the keys at ``locs`` (so their defaults apply)."""
    import copy

    out = copy.deepcopy(tree)
    for loc in locs:
        keys = [k for k in loc if isinstance(k, str)]
        node = out
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and keys:
            node.pop(keys[-1], None)
    return out


def _describe(error: Mapping[str, Any], origins: Mapping[str, str]) -> str:
    loc = [str(p) for p in error["loc"]]
    key = ".".join(loc) or "(top level)"
    where = (
        origins.get(key)
        or next((origins[p] for p in _parents(key) if p in origins), None)
        or next((o for k, o in origins.items() if k.startswith(key + ".")), None)
    )
    suffix = f" [set by {where}]" if where else ""
    if error["type"] == "extra_forbidden":
        model: type[BaseModel] = Experiment
        for part in loc[:-1]:
            model = model.model_fields[part].annotation
        known = list(model.model_fields)
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
        return f"{key}: unknown key{hint}{suffix}"
    expected = error["msg"].removeprefix("Value error, ")
    return f"{key}: {expected} (got {_short(repr(error.get('input')))}){suffix}"


def _business_days(start: date, end: date) -> int:
    return int(np.busday_count(start, end + timedelta(days=1)))


def _cross_checks(exp: Experiment, check_files: bool) -> list[str]:
    """Combinations no single field can judge: each a problem, all collected."""
    problems = []
    data, cv = exp.data, exp.cv
    if data.source == "files" and not data.path:
        problems.append(
            "data.path: required when data.source is 'files' (a path or glob of price files)"
        )
    if data.source == "http" and not (data.url and data.universe):
        problems.append(
            "data.url: the http source needs url (a template with {symbol}) and universe (the symbols to fetch)"
        )
    if data.source == "bundled" and (
        data.path or data.columns or data.symbol_from_filename or data.sectors or data.url
    ):
        problems.append(
            "data.source: 'bundled' takes no path, url, columns, symbol_from_filename or sectors; set source: files or http"
        )
    if data.sectors and check_files and not Path(data.sectors).expanduser().is_file():
        problems.append(f"data.sectors: no such file {data.sectors!r}")
    if data.source == "files" and data.path and check_files:
        from glob import glob

        pattern = str(Path(data.path).expanduser())
        if not [p for p in glob(pattern) if Path(p).is_file()]:
            problems.append(f"data.path: no file matches {data.path!r}")
    end = data.end_date or (BUNDLED_LAST_DATE if data.source == "bundled" else None)
    if data.end_date and data.end_date <= data.start_date:
        problems.append(
            f"data.end_date: {data.end_date} is not after data.start_date {data.start_date}"
        )
    elif end:
        days = _business_days(data.start_date, end)
        outer_block = days * (1 - cv.tune_fraction) / cv.outer_splits
        inner_block = days * cv.tune_fraction / 2 / cv.inner_splits
        for name, block in (("cv.outer_splits", outer_block), ("cv.inner_splits", inner_block)):
            if block <= exp.labels.horizon:
                problems.append(
                    f"{name}: test blocks of ~{block:.0f} trading days are not longer than the purge "
                    f"(labels.horizon = {exp.labels.horizon}); use fewer splits or a longer date range"
                )
    feats = exp.features
    if feats.set == "custom" and not feats.names:
        problems.append("features.names: the custom feature set needs a list of feature names")
    if feats.names and feats.set != "custom":
        problems.append(
            f"features.names: only used by the custom set; set features.set: custom (now {feats.set!r})"
        )
    for name in feats.names:
        try:
            spec(name)
        except KeyError:
            close = difflib.get_close_matches(name, list(REGISTRY), n=1)
            hint = (
                f"; did you mean '{close[0]}'?"
                if close
                else " (a registered name, or a family such as vol_45)"
            )
            problems.append(f"features.names: unknown feature {name!r}{hint}")
    unknown = [m for m in exp.models.names if m not in MODEL_SPECS]
    for m in unknown:
        close = difflib.get_close_matches(m, list(MODEL_SPECS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        problems.append(
            f"models.names: unknown model {m!r}; expected one of {sorted(MODEL_SPECS)}{hint}"
        )
    if not exp.models.names:
        problems.append("models.names: at least one base model is needed")
    if exp.models.dask_scheduler and exp.models.engine != "dask":
        problems.append(
            "models.dask_scheduler: only used by models.engine: dask (now "
            f"{exp.models.engine!r}); set engine: dask or drop the address"
        )
    if exp.explain.model not in exp.models.names and not unknown:
        problems.append(
            f"explain.model: {exp.explain.model!r} is not among models.names {exp.models.names}"
        )
    if data.universe is not None and exp.portfolio.top_k >= len(data.universe):
        problems.append(
            f"portfolio.top_k: {exp.portfolio.top_k} is not smaller than the universe of {len(data.universe)} symbols"
        )
    if exp.portfolio.fill == "open" and data.source == "bundled":
        problems.append(
            "portfolio.fill: 'open' needs open prices; the bundled data has closes only"
        )
    if exp.portfolio.benchmark not in exp.portfolio.strategies:
        problems.append(
            f"portfolio.benchmark: {exp.portfolio.benchmark!r} is not among portfolio.strategies "
            f"{exp.portfolio.strategies}"
        )
    if exp.labels.skip and exp.labels.kind != "forward":
        problems.append(f"labels.skip: applies to forward labels, not {exp.labels.kind!r}")
    if exp.risk.strategy not in exp.portfolio.strategies:
        problems.append(
            f"risk.strategy: {exp.risk.strategy!r} is not among portfolio.strategies "
            f"{exp.portfolio.strategies}"
        )
    if data.lob and check_files:
        from glob import glob

        pattern = str(Path(data.lob).expanduser())
        if Path(pattern).is_dir():
            pattern = str(Path(pattern) / "*")
        if not [p for p in glob(pattern) if "_message_" in Path(p).name]:
            problems.append(f"data.lob: no LOBSTER message file matches {data.lob!r}")
    micro = exp.microstructure
    if micro.serve_horizon not in micro.horizons:
        problems.append(
            f"microstructure.serve_horizon: {micro.serve_horizon!r} is not among "
            f"microstructure.horizons {micro.horizons}"
        )
    if micro.impact_interval_s not in micro.clocks_s:
        problems.append(
            f"microstructure.impact_interval_s: {micro.impact_interval_s} s is not among "
            f"microstructure.clocks_s {micro.clocks_s}"
        )
    for key in ("mlflow_uri", "optuna_storage"):
        value = getattr(exp.tracking, key)
        if value and (where := inline_secret(value)):
            problems.append(
                f"tracking.{key}: holds a password ({where}); use a reference such as "
                "${env:MLFLOW_DB_PASSWORD} in its place"
            )
    problems += _secret_checks(data)
    if check_files:
        problems += _root_checks(data)
    return problems


def _secret_checks(data: DataSection) -> list[str]:
    """The vendor key only by reference, never typed into the URL, never over plain http."""
    from pipelines.sources import check_vendor_url

    problems = []
    if data.api_key and not ENV_REF.fullmatch(data.api_key.strip()):
        problems.append(
            "data.api_key: must be a reference ${env:VAR} (the key itself never goes in the "
            "experiment: it is logged)"
        )
    if data.url and (where := inline_secret(data.url)):
        problems.append(
            f"data.url: holds a key ({where}); write {{api_key}} in its place and set "
            "data.api_key: ${env:VAR}"
        )
    if data.source == "http" and data.url:
        try:
            check_vendor_url(data.url, bool(data.api_key) and "{api_key}" in data.url)
        except ValueError as err:
            problems.append(
                f"data.url: would send data.api_key over plain http ({err})"
                if "plain http" in str(err)
                else f"data.url: {err}"
            )
    return problems


def _root_checks(data: DataSection) -> list[str]:
    """Every file the experiment names resolves inside the data root (checked again, on the
    file actually opened, when it is read)."""
    from glob import glob

    root = data_root(data)
    if not root:
        return []
    base = Path(root).expanduser().resolve()
    problems = []
    named = {"sectors": data.sectors, "texts": data.texts}
    if data.source == "files" and data.path:
        named["path"] = data.path
    for key, value in named.items():
        if not value:
            continue
        matches = [Path(p) for p in glob(str(Path(value).expanduser())) if Path(p).is_file()]
        outside = [p for p in matches if not p.resolve().is_relative_to(base)]
        if outside:
            problems.append(
                f"data.{key}: {len(outside)} file(s) resolve outside data.root {root} "
                f"(first: {_short(str(outside[0]))} -> {_short(str(outside[0].resolve()))})"
            )
    return problems
