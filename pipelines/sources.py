"""Data sources: the real data bundled with pip packages (default) and the user's own files.

Bundled (no network at run time): skfolio's 20 S&P 500 stocks (adjusted close, 1990-2022), the
S&P 500 index and five factor ETFs (MTUM, QUAL, SIZE, USMV, VLUE); arch's VIX (2014-2019) and
Fama-French three factors (monthly, 1926-2018).
"""

import glob
from pathlib import Path

import pandas as pd
import polars as pl
from dagster import ConfigurableResource

from data_contracts import PRICE_COLUMNS, ContractViolation, Violation
from data_contracts.prices import CONTRACT
from models.panel import wide_to_long

# GICS sectors of skfolio's 20 bundled stocks (public classification, as of 2024).
BUNDLED_SECTORS = {
    "AAPL": "Information Technology",
    "AMD": "Information Technology",
    "MSFT": "Information Technology",
    "BAC": "Financials",
    "JPM": "Financials",
    "BBY": "Consumer Discretionary",
    "HD": "Consumer Discretionary",
    "CVX": "Energy",
    "XOM": "Energy",
    "RRC": "Energy",
    "GE": "Industrials",
    "JNJ": "Health Care",
    "LLY": "Health Care",
    "MRK": "Health Care",
    "PFE": "Health Care",
    "UNH": "Health Care",
    "KO": "Consumer Staples",
    "PEP": "Consumer Staples",
    "PG": "Consumer Staples",
    "WMT": "Consumer Staples",
}

# Kenneth French publishes a month's factors early in the following month; we treat a month
# as known only at the end of the next month, a conservative publication lag.
FRENCH_LAG_MONTHS = 1


class BundledPriceSource(ConfigurableResource):
    """skfolio's bundled S&P 500 sample: 20 stocks, daily adjusted close."""

    def load_prices(self) -> pl.DataFrame:
        from skfolio.datasets import load_sp500_dataset

        wide = load_sp500_dataset()
        line = pl.DataFrame(
            {
                "date": wide.index.to_numpy().astype("datetime64[D]"),
                "source_row": range(2, len(wide) + 2),
            }
        )
        return (
            wide_to_long(wide, "close")
            .join(line, on="date")
            .with_columns(source_file=pl.lit(self.describe()))
        )

    def describe(self) -> str:
        return "skfolio bundled sp500_dataset.csv.gz"

    def load_sectors(self) -> pl.DataFrame:
        return pl.DataFrame(
            {"symbol": list(BUNDLED_SECTORS), "sector": list(BUNDLED_SECTORS.values())}
        )


class FilePriceSource(ConfigurableResource):
    """The user's price files: one long file or many, CSV, CSV.gz or Parquet, given as a path or
    glob. Columns are matched case-insensitively (``symbol, date, close`` required; ``open,
    high, low, volume`` optional); ``columns`` maps our names to a vendor's, e.g.
    ``{"date": "timestamp", "close": "adjusted_close"}`` for AlphaVantage. With
    ``symbol_from_filename`` a per-ticker file's name (``AAPL.csv.gz``) gives the symbol."""

    path: str
    columns: dict[str, str] = {}
    symbol_from_filename: bool = False
    sectors: str | None = None

    def files(self) -> list[Path]:
        matches = (
            sorted(glob.glob(str(Path(self.path).expanduser())))
            if any(c in self.path for c in "*?[")
            else [self.path]
        )
        files = [Path(m) for m in matches if Path(m).is_file()]
        if not files:
            raise FileNotFoundError(f"no price file matches {self.path!r}")
        return files

    def load_prices(self) -> pl.DataFrame:
        mapping = {ours: theirs.strip().lower() for ours, theirs in self.columns.items()}
        frames = [
            _select(_read(f), mapping, f if self.symbol_from_filename else None)
            for f in self.files()
        ]
        return pl.concat(frames, how="diagonal_relaxed")

    def describe(self) -> str:
        return self.path

    def load_sectors(self) -> pl.DataFrame:
        """The sector map file (CSV with ``symbol`` and ``sector`` columns, any case), if any."""
        if not self.sectors:
            return pl.DataFrame(schema={"symbol": pl.String, "sector": pl.String})
        frame = pl.read_csv(self.sectors, infer_schema=False)
        frame = frame.rename({c: c.strip().lower() for c in frame.columns})
        missing = {"symbol", "sector"} - set(frame.columns)
        if missing:
            raise ValueError(
                f"{self.sectors}: sector map needs columns symbol and sector; missing {sorted(missing)}"
            )
        return frame.select("symbol", "sector").unique("symbol", keep="first")


def _read(path: Path) -> pl.DataFrame:
    """One file as strings (CSV) or typed (Parquet), with ``source_file`` and ``source_row``
    (line number for CSV with the header on line 1, 1-based row number for Parquet)."""
    if path.suffix == ".parquet":
        frame, first = pl.read_parquet(path), 1
    else:
        try:
            frame, first = pl.read_csv(path, infer_schema=False), 2
        except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as err:
            first_line = (
                str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            )
            raise ContractViolation(
                CONTRACT,
                [
                    Violation(
                        f"not a readable CSV file ({first_line})", None, str(path), None, None, None
                    )
                ],
            ) from err
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    return frame.with_columns(
        source_file=pl.lit(str(path)),
        source_row=pl.int_range(first, len(frame) + first, dtype=pl.Int64),
    )


def _select(frame: pl.DataFrame, mapping: dict[str, str], symbol_file: Path | None) -> pl.DataFrame:
    """Rename the vendor's columns to ours; columns neither mapped nor ours are dropped.

    A mapped column missing from the file is left missing, so the contract names it.
    """
    source = str(frame["source_file"][0]) if len(frame) else None
    picked = [
        pl.col(mapping.get(c, c)).alias(c)
        for c in PRICE_COLUMNS
        if mapping.get(c, c) in frame.columns
    ]
    out = frame.select(*picked, "source_file", "source_row")
    if symbol_file is not None:
        out = out.with_columns(symbol=pl.lit(ticker_from_name(symbol_file)))
    missing = {ours: theirs for ours, theirs in mapping.items() if theirs not in frame.columns}
    if missing:
        raise ContractViolation(
            CONTRACT,
            [
                Violation(
                    f"is mapped to '{theirs}', which the file lacks (columns: {frame.columns})",
                    ours,
                    source,
                    None,
                    None,
                    None,
                )
                for ours, theirs in missing.items()
            ],
        )
    return out


def ticker_from_name(path: Path) -> str:
    """``BRK.B.csv.gz`` -> ``BRK.B``: the file name without its data suffixes."""
    name = path.name
    for suffix in (".gz", ".csv", ".parquet"):
        name = name.removesuffix(suffix)
    return name


class BundledAltSource(ConfigurableResource):
    """Index, factor ETFs, VIX and Fama-French factors from skfolio and arch."""

    def load_alt_data(self) -> pl.DataFrame:
        import arch.data.frenchdata
        import arch.data.vix
        from skfolio.datasets import load_factors_dataset, load_sp500_index

        daily = [
            wide_to_long(load_sp500_index(), "value", name="series").with_columns(
                kind=pl.lit("price")
            ),
            wide_to_long(load_factors_dataset(), "value", name="series").with_columns(
                kind=pl.lit("price")
            ),
            wide_to_long(
                arch.data.vix.load().rename(columns={"vix": "VIX"}), "value", name="series"
            ).with_columns(kind=pl.lit("level")),
        ]
        frames = [d.with_columns(available_date=pl.col("date")) for d in daily]
        frames.append(_french_monthly(arch.data.frenchdata.load()))
        return pl.concat(
            [f.select("series", "kind", "date", "available_date", "value") for f in frames]
        )


def _french_monthly(french: pd.DataFrame) -> pl.DataFrame:
    """arch loads these dates as nanoseconds after 1970 that spell ``YYYYMM``: parse them."""
    yyyymm = pd.Series(french.index.astype("int64"), index=french.index)
    month_end = pd.to_datetime(yyyymm.astype(str), format="%Y%m") + pd.offsets.MonthEnd(0)
    wide = french.set_axis(month_end.to_numpy()).rename(
        columns=lambda c: f"FF_{c.replace('-', '_')}"
    )
    return wide_to_long(wide, "value", name="series").with_columns(
        kind=pl.lit("monthly"),
        available_date=pl.col("date").dt.offset_by(f"{FRENCH_LAG_MONTHS}mo").dt.month_end(),
    )
