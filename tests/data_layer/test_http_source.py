"""The vendor adapter: AlphaVantage-style HTTP API served from recorded files by a local server
on 127.0.0.1 (no live network), through the same mapping and contract as files."""

import gzip
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import arch.data.nasdaq
import arch.data.sp500
import polars as pl
import pytest
from fakes import vendor_stub

from data_contracts import ContractViolation, check_prices
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
    with vendor_stub(responses, KEY) as (base, seen):
        yield (
            (
                f"{base}/query?function=TIME_SERIES_DAILY_ADJUSTED"
                "&symbol={symbol}&apikey={api_key}&datatype=csv"
            ),
            seen,
        )


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


# --- hostile vendors: bombs, redirects, trickling answers, the key on error paths -------------


class _Hostile(BaseHTTPRequestHandler):
    """Answers by path: /bomb (a gzip bomb as the body), /slow (one byte per 0.1 s), /away
    (a redirect to another host), /down (a redirect to another scheme, ftp)."""

    other = ""  # the other host's base URL, set by the fixture
    seen: list = []

    def do_GET(self):  # noqa: N802
        self.seen.append(self.path)
        route = urlparse(self.path).path
        if route == "/bomb":
            body = gzip.compress(b"timestamp,close\n" + b"2020-01-02,1.0\n" * 1_500_000, 9)
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            self.wfile.write(body)
        elif route == "/slow":
            self.send_response(200)
            self.end_headers()
            for byte in b"timestamp,close\n2020-01-02,1.0\n":
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.1)
        elif route in ("/away", "/down"):
            query = urlparse(self.path).query
            port = self.server.server_port
            target = f"{self.other}/steal" if route == "/away" else f"ftp://127.0.0.1:{port}/steal"
            self.send_response(302)
            self.send_header("Location", f"{target}?{query}")
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def hostile():
    # the "other host" is 127.0.0.2: another address of the loopback, so another host by name
    servers = [ThreadingHTTPServer((host, 0), _Hostile) for host in ("127.0.0.1", "127.0.0.2")]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hostile.other = f"http://127.0.0.2:{servers[1].server_port}"
    yield f"http://127.0.0.1:{servers[0].server_port}"
    for server in servers:
        server.shutdown()


def _one(base: str, route: str, **kw) -> tuple:
    source = HttpPriceSource(
        url=f"{base}/{route}?symbol={{symbol}}&apikey={{api_key}}",
        symbols=["SPX"],
        api_key=KEY,
        columns={"date": "timestamp"},
        **kw,
    )
    raw = source.load_prices()
    return raw, [str(v) for v in raw.skipped]


def test_a_compressed_http_body_is_inflated_within_the_limit(hostile):
    raw, skipped = _one(hostile, "bomb", max_file_mb=4)
    assert raw.frame.is_empty() and len(skipped) == 1
    assert "expands to more than the 4 MB limit uncompressed (gzip" in skipped[0]


@pytest.mark.parametrize(
    "route, target", [("away", "http://127.0.0.2"), ("down", "ftp://127.0.0.1")]
)
def test_a_redirect_to_another_host_or_scheme_is_not_followed(hostile, route, target):
    _Hostile.seen.clear()
    raw, skipped = _one(hostile, route)
    assert f"was redirected (HTTP 302) to {target}: refused" in skipped[0]
    assert not [p for p in _Hostile.seen if p.startswith("/steal")]  # the key never left
    assert KEY not in " ".join(skipped)


def test_a_trickling_vendor_is_cut_off_at_the_timeout(hostile):
    started = time.monotonic()
    raw, skipped = _one(hostile, "slow", timeout_s=1.0)
    assert time.monotonic() - started < 2.5  # the body would take 3.1 s
    assert "took longer than 1 s (timeout_s) to answer" in skipped[0]


def test_the_key_never_travels_over_plain_http_to_another_machine():
    source = HttpPriceSource(
        url="http://vendor.example.com/q?symbol={symbol}&apikey={api_key}",
        symbols=["X"],
        api_key=KEY,
    )
    with pytest.raises(ValueError, match="refusing to send data.api_key over plain http"):
        source.load_prices()


def test_an_invalid_url_error_is_caught_per_symbol_and_masked(hostile):
    # a space in the template: http.client raises InvalidURL quoting the whole URL, key included
    source = HttpPriceSource(
        url=f"{hostile}/q?symbol={{symbol}}&apikey={{api_key}}&x= y",
        symbols=["SPX", "NDX"],
        api_key=KEY,
    )
    raw = source.load_prices()
    assert [v.symbol for v in raw.skipped] == ["SPX", "NDX"]
    text = " ".join(str(v) for v in raw.skipped)
    assert "could not be fetched (URL can't contain control characters" in text
    assert KEY not in text and "apikey=***" in text
    with pytest.raises(ContractViolation) as err:
        check_prices(raw, date(2026, 11, 20))
    assert KEY not in str(err.value)
