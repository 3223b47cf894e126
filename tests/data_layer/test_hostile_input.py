"""Hostile input: unsafe YAML, oversized files and decompression bombs are refused with a
clear message; the UIs bind to the loopback interface only."""

import gzip
import time
from datetime import date

import pytest

from data_contracts import ContractViolation, check_prices
from pipelines.cli import ui_commands
from pipelines.experiment import ExperimentError, resolve
from pipelines.settings import load_settings
from pipelines.sources import FilePriceSource

RUN_DATE = date(2026, 11, 20)
GOOD = "symbol,date,close\nAAA,2020-01-02,10\nAAA,2020-01-03,11\n"


def test_yaml_with_python_tags_is_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text('profile: fast\nmodels: !!python/object/apply:os.system ["touch pwned"]\n')
    with pytest.raises(ExperimentError, match="not valid YAML: could not determine a constructor"):
        resolve(path, environ={})
    assert not (tmp_path / "pwned").exists()


def test_decompression_bomb_is_refused_and_the_other_files_load(tmp_path):
    (tmp_path / "good.csv").write_text(GOOD)
    # 2 MB of gzip that would expand to about 72 MB
    bomb = b"symbol,date,close\n" + b"BOMB,2020-01-02,1.0\n" * 3_600_000
    (tmp_path / "bomb.csv.gz").write_bytes(gzip.compress(bomb, compresslevel=9))
    raw = FilePriceSource(path=str(tmp_path / "*"), max_file_mb=16).load_prices()
    (skip,) = raw.skipped
    assert skip.file.endswith("bomb.csv.gz")
    assert "expands to more than the 16 MB limit" in skip.rule
    checked = check_prices(raw, RUN_DATE)
    assert checked.clean["symbol"].to_list() == ["AAA", "AAA"]


def test_oversized_plain_file_is_refused(tmp_path):
    (tmp_path / "big.csv").write_text("symbol,date,close\n" + "B,2020-01-02,1\n" * 200_000)
    raw = FilePriceSource(path=str(tmp_path / "big.csv"), max_file_mb=1).load_prices()
    (skip,) = raw.skipped
    assert "is larger than the 1 MB limit" in skip.rule
    with pytest.raises(ContractViolation, match="no readable price rows"):
        check_prices(raw, RUN_DATE)


def test_uis_listen_on_loopback_only(tmp_path):
    commands = ui_commands(load_settings({"ALPHAFORGE_HOME": str(tmp_path)}), 3000, 5000)
    for command in commands:
        assert "127.0.0.1" in command and "0.0.0.0" not in command


# --- decompression bombs, whatever they are called ---------------------------------------------


def _members(count: int, rows: int) -> bytes:
    """``count`` gzip members back to back (a valid gzip file), each ``rows`` CSV rows."""
    member = gzip.compress(b"BOMB,2020-01-02,1.0\n" * rows, compresslevel=9)
    return gzip.compress(b"symbol,date,close\n") + member * count


def test_multi_member_gzip_bomb_is_refused(tmp_path):
    # ~100 KiB of gzip, 40 members of 1 MB each: the last member's trailer says 1 MB, under the
    # limit, and was once trusted for the whole file
    (tmp_path / "good.csv").write_text(GOOD)
    (tmp_path / "bomb.csv.gz").write_bytes(_members(40, 50_000))
    assert (tmp_path / "bomb.csv.gz").stat().st_size < 200_000
    raw = FilePriceSource(path=str(tmp_path / "*"), max_file_mb=1).load_prices()
    (skip,) = raw.skipped
    assert skip.file.endswith("bomb.csv.gz") and "expands to more than the 1 MB limit" in skip.rule
    assert check_prices(raw, RUN_DATE).clean["symbol"].to_list() == ["AAA", "AAA"]


@pytest.mark.parametrize("kind", ["gzip", "zstd", "zlib"])
def test_compressed_payload_named_csv_is_inflated_within_the_limit(tmp_path, kind):
    import zlib

    import pyarrow as pa

    bomb = b"symbol,date,close\n" + b"BOMB,2020-01-02,1.0\n" * 1_000_000  # 20 MB
    packed = {
        "gzip": lambda b: gzip.compress(b, compresslevel=9),
        "zstd": lambda b: pa.compress(b, codec="zstd", asbytes=True),
        "zlib": lambda b: zlib.compress(b, 9),
    }[kind]
    (tmp_path / "good.csv").write_text(GOOD)
    (tmp_path / "bomb.csv").write_bytes(packed(bomb))  # polars inflates all three by itself
    (tmp_path / "fine.csv").write_bytes(packed(GOOD.replace("AAA", "BBB").encode()))
    raw = FilePriceSource(path=str(tmp_path / "*"), max_file_mb=4).load_prices()
    (skip,) = raw.skipped
    assert skip.file.endswith("bomb.csv") and f"more than the 4 MB limit uncompressed ({kind}" in (
        skip.rule
    )
    assert sorted(check_prices(raw, RUN_DATE).clean["symbol"]) == ["AAA", "AAA", "BBB", "BBB"]


def test_parquet_bomb_is_refused_by_its_declared_size(tmp_path):
    import polars as pl

    n = 3_000_000  # one repeated row: a few KiB of Parquet, ~70 MB as values
    pl.select(
        symbol=pl.repeat("BOMB", n), date=pl.repeat(date(2020, 1, 2), n), close=pl.repeat(1.0, n)
    ).write_parquet(tmp_path / "bomb.parquet")
    assert (tmp_path / "bomb.parquet").stat().st_size < 100_000
    (tmp_path / "good.csv").write_text(GOOD)
    raw = FilePriceSource(path=str(tmp_path / "*"), max_file_mb=16).load_prices()
    (skip,) = raw.skipped
    assert skip.file.endswith("bomb.parquet") and "more than the 16 MB limit" in skip.rule


# --- the data root: checked on the file actually opened -----------------------------------------


def test_symlink_swapped_after_the_check_reads_nothing_outside_the_root(tmp_path, monkeypatch):
    """The check and the read are one open: an attacker who swaps a symlink between the
    moment a file is judged and the moment it is read gets nothing. Simulated by swapping the
    link the moment the source resolves its name."""
    from pathlib import Path

    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (root / "inside.csv").write_text(GOOD)
    (outside / "secret.csv").write_text(GOOD.replace("AAA", "SECRET"))
    link = root / "SWAP.csv"
    link.symlink_to(root / "inside.csv")
    resolve = Path.resolve

    def resolve_then_swap(self, *args, **kwargs):
        out = resolve(self, *args, **kwargs)
        if self.name == "SWAP.csv" and resolve(link).parent == root:
            link.unlink()
            link.symlink_to(outside / "secret.csv")
        return out

    monkeypatch.setattr(Path, "resolve", resolve_then_swap)
    raw = FilePriceSource(path=str(link), root=str(root)).load_prices()
    assert "SECRET" not in raw.frame.write_csv()
    assert raw.frame["symbol"].to_list() == ["AAA", "AAA"]


def test_sector_map_and_texts_outside_the_root_or_too_big_are_refused(tmp_path):
    from pipelines.sources import BundledAltSource

    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (root / "p.csv").write_text(GOOD)
    (outside / "sectors.csv").write_text("symbol,sector\nAAA,Energy\n")
    (root / "sectors.csv").symlink_to(outside / "sectors.csv")
    source = FilePriceSource(
        path=str(root / "p.csv"), root=str(root), sectors=str(root / "sectors.csv")
    )
    with pytest.raises(ContractViolation, match="is outside the data root"):
        source.load_sectors()
    (root / "news.csv").write_text("date,ticker,text\n" + "2020-01-02,AAA,word\n" * 80_000)
    with pytest.raises(ContractViolation, match="is larger than the 1 MB limit"):
        BundledAltSource(texts=str(root / "news.csv"), root=str(root), max_file_mb=1).load_texts()


# --- hostile experiment files --------------------------------------------------------------------


def test_a_yaml_alias_bomb_is_refused_at_once_with_a_short_message(tmp_path):
    # billion laughs: 7 levels of 9 aliases; the value behind *a7 is 9**7 strings, and an
    # error message that printed it whole ran to 35 M characters
    lines = ["profile: fast", "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join([*lines, "models: {n_trials: *a7}"]) + "\n")
    started = time.monotonic()
    with pytest.raises(ExperimentError) as err:
        resolve(path, environ={})
    assert time.monotonic() - started < 2
    assert "anchors and aliases (&, *) are not allowed" in str(err.value)
    assert len(str(err.value)) < 1000


def test_an_oversized_experiment_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("profile: fast\nmodels: {n_trials: '" + "x" * 10_000_000 + "'}\n")
    with pytest.raises(ExperimentError, match=r"is larger than 1 MiB \(9\.5 MiB\)") as err:
        resolve(path, environ={})
    assert len(str(err.value)) < 1000


def test_a_long_bad_value_is_truncated_in_the_message(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text("models: {n_trials: '" + "x" * 500_000 + "'}\n")
    with pytest.raises(
        ExperimentError, match="models.n_trials: Input should be a valid integer"
    ) as e:
        resolve(path, environ={})
    assert len(str(e.value)) < 1000 and "… (500,002 characters)" in str(e.value)
    # the same from the command line and the environment
    for source in ({"overrides": {"models.n_trials": "y" * 200_000}},
                   {"environ": {"ALPHAFORGE__MODELS__N_TRIALS": "z" * 200_000}}):  # fmt: skip
        with pytest.raises(ExperimentError) as e:
            resolve(None, **({"environ": {}} | source))
        assert len(str(e.value)) < 1000


# --- the stream feed and the score file ---------------------------------------------------------


@pytest.mark.parametrize(
    "lines, message",
    [
        (["symbol,date,open,high,low,close,volume", "AAA"], "line 2: expected 7 comma-separated"),
        (["AAA,2020-01-02,,,,10,", "AAA;2020-01-03;;;;11;"], "line 2: expected 7 comma-separated"),
        (["AAA,2020-01-02,,,,10," + "9" * 2_000_000], "line 1 is longer than 65,536 bytes"),
    ],
    ids=["one-field", "wrong-separator", "endless-line"],
)
def test_a_bad_stream_line_is_named_not_an_index_error(lines, message):
    import io

    from pipelines.streaming import days_from_lines

    with pytest.raises(ValueError, match=message):
        list(days_from_lines(io.StringIO("\n".join(lines) + "\n")))


def test_score_file_is_written_atomically(tmp_path, monkeypatch):
    import polars as pl

    from pipelines.serving import write_scores

    out = tmp_path / "scores.csv"
    out.write_text("old scores\n")
    frame = pl.DataFrame({"symbol": ["A"], "score": [1.0]})

    def broken(self, file, *args, **kwargs):
        file.write(b"symbol,sc")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        write_scores(frame, out)
    assert out.read_text() == "old scores\n" and [p.name for p in tmp_path.iterdir()] == [out.name]
    monkeypatch.undo()
    write_scores(frame, out)
    assert pl.read_csv(out).equals(frame)
