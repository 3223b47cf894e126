"""The vendor adapter: AlphaVantage-style HTTP API served from recorded files by a local server
on 127.0.0.1 (no live network), through the same mapping and contract as files."""

import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import arch.data.nasdaq
import arch.data.sp500
import polars as pl
import pytest

from data_contracts import check_prices
from pipelines.sources import HttpPriceSource

KEY = "test-key-123"


def _recorded(loader) -> bytes:
    """A response as AlphaVantage's TIME_SERIES_DAILY_ADJUSTED&datatype=csv sends it (newest
    first), cut from arch's real index data."""
    frame = pl.from_pandas(loader.load().reset_index()).tail(300)
    return (
        frame.select(
            timestamp=pl.col("Date").dt.date(),
            open="Open",
            high="High",
            low="Low",
            close="Close",
            adjusted_close="Adj Close",
            volume="Volume",
            dividend_amount=pl.lit(0.0),
            split_coefficient=pl.lit(1.0),
        )
        .sort("timestamp", descending=True)
        .write_csv()
        .encode()
    )


@pytest.fixture(scope="module")
def vendor():
    responses = {
        "SPX": _recorded(arch.data.sp500),
        "NDX": _recorded(arch.data.nasdaq),
        # what AlphaVantage answers (HTTP 200) for a symbol it cannot serve
        "BF.B": b'{\n    "Error Message": "Invalid API call. Please retry or visit the documentation."\n}',
    }
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            query = parse_qs(urlparse(self.path).query)
            seen.append(query)
            if query.get("apikey") != [KEY]:
                self.send_response(401)
                self.end_headers()
                return
            body = responses.get(query["symbol"][0])
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = (
        f"http://127.0.0.1:{server.server_port}/query?function=TIME_SERIES_DAILY_ADJUSTED"
        "&symbol={symbol}&apikey={api_key}&datatype=csv"
    )
    yield url, seen
    server.shutdown()


def test_http_source_maps_validates_and_names_what_it_skips(vendor):
    url, seen = vendor
    source = HttpPriceSource(
        url=url,
        symbols=["SPX", "NDX", "BF.B", "NOPE"],
        api_key=KEY,
        columns={"date": "timestamp", "split": "split_coefficient", "dividend": "dividend_amount"},
    )
    raw = source.load_prices()
    checked = check_prices(raw, date(2026, 11, 20))
    assert sorted(checked.clean["symbol"].unique()) == ["NDX", "SPX"]
    assert len(checked.clean) == 600 == checked.rows_in
    skipped = {v.symbol: v.rule for v in checked.skipped}
    assert "lacks mapped column" in skipped["BF.B"]
    assert "could not be fetched (HTTP Error 404" in skipped["NOPE"]
    # the key is sent to the vendor but never shown in messages or metadata
    assert all(q["apikey"] == [KEY] for q in seen)
    assert KEY not in source.describe() and all(KEY not in str(v) for v in checked.skipped)
    assert checked.clean["source_file"].str.contains("apikey=***", literal=True).all()


def test_http_source_date_window_and_wrong_key(vendor):
    url, _ = vendor
    source = HttpPriceSource(url=url, symbols=["SPX"], api_key=KEY, columns={"date": "timestamp"})
    last = check_prices(source.load_prices(), date(2026, 11, 20)).clean["date"].max()
    day = source.load_prices(last, last)
    assert len(day.frame) == 1
    wrong = HttpPriceSource(url=url, symbols=["SPX"], api_key="nope", columns={"date": "timestamp"})
    (skip,) = wrong.load_prices().skipped
    assert "HTTP Error 401" in skip.rule and "nope" not in skip.file
    with pytest.raises(ValueError, match="must be http"):
        HttpPriceSource(url="file:///etc/passwd?{symbol}", symbols=["X"]).load_prices()
