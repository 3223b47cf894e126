"""The lake IO manager and the sources, exercised directly on temp directories."""

import os
import pickle
import stat
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from dagster import build_input_context, build_output_context

from pipelines.atomic import write_atomic
from pipelines.io_managers import LakeIOManager
from pipelines.sources import BundledAltSource, BundledPriceSource, FilePriceSource


def test_lake_round_trip_frames_and_objects(tmp_path):
    manager = LakeIOManager(base_dir=str(tmp_path))
    frame = pl.DataFrame({"symbol": ["A"], "x": [1.5]})
    manager.handle_output(build_output_context(asset_key="feature_matrix"), frame)
    assert pl.read_parquet(tmp_path / "feature_matrix.parquet").equals(frame)
    loaded = manager.load_input(
        build_input_context(
            asset_key="feature_matrix",
            upstream_output=build_output_context(asset_key="feature_matrix"),
        )
    )
    assert loaded.equals(frame)
    manager.handle_output(build_output_context(asset_key="base_models"), {"params": {"a": 1}})
    assert manager.load_input(
        build_input_context(
            asset_key="base_models", upstream_output=build_output_context(asset_key="base_models")
        )
    ) == {"params": {"a": 1}}


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "x.parquet"
    target.write_bytes(b"old")

    def broken(handle):
        handle.write(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_atomic(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


def test_file_source_reads_csv_and_parquet_with_row_numbers(tmp_path):
    (tmp_path / "a.csv").write_text("Symbol,Date,Close\nAAA,2020-01-02,10\nAAA,2020-01-03,11\n")
    pl.DataFrame({"symbol": ["BBB"], "date": [date(2020, 1, 2)], "close": [5.0]}).write_parquet(
        tmp_path / "b.parquet"
    )
    raw = FilePriceSource(path=str(tmp_path / "*")).load_prices().frame
    a = raw.filter(pl.col("symbol") == "AAA")
    assert a["source_row"].to_list() == [2, 3]
    assert a["source_file"][0] == str(tmp_path / "a.csv")
    assert raw.filter(pl.col("symbol") == "BBB")["source_row"].to_list() == [1]


def test_file_source_names_a_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no price file matches"):
        FilePriceSource(path=str(tmp_path / "nothing*.csv")).load_prices()


def test_bundled_sources_are_real_offline_data():
    prices = BundledPriceSource().load_prices().frame
    assert prices["symbol"].n_unique() == 20 and prices.height > 150_000
    assert prices["date"].min() == date(1990, 1, 2) and prices["date"].max() == date(2022, 12, 28)
    alt = BundledAltSource().load_alt_data()
    assert {"SP500", "VIX", "MTUM", "FF_Mkt_RF"} <= set(alt["series"])
    ff = alt.filter(pl.col("series") == "FF_Mkt_RF")
    # arch loads French dates as 1970 timestamps; we parse YYYYMM
    assert ff["date"].min().year == 1926 and ff["date"].max().year == 2018
    assert (ff["available_date"] > ff["date"]).all()


def test_pickle_is_not_used_for_frames(tmp_path):
    manager = LakeIOManager(base_dir=str(tmp_path))
    manager.handle_output(build_output_context(asset_key="labels"), pl.DataFrame({"a": [1]}))
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(Path(tmp_path / "labels.parquet").read_bytes())


def _object_context(asset: str):
    return build_input_context(
        asset_key=asset, upstream_output=build_output_context(asset_key=asset)
    )


class _Evil:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_lake_pickles_are_private_and_a_foreign_or_tampered_one_is_refused_unread(tmp_path):
    manager = LakeIOManager(base_dir=str(tmp_path))
    with build_output_context(asset_key="base_models") as out:
        manager.handle_output(out, {"params": {"a": 1}})
    path = tmp_path / "base_models.pkl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # fitted models are nobody else's
    marker, good = tmp_path / "pwned", path.read_bytes()
    ours, evil = (pickle.dumps(o, protocol=5) for o in ({"params": {"a": 1}}, _Evil(marker)))
    with _object_context("base_models") as context:
        assert manager.load_input(context) == {"params": {"a": 1}}
        # a pickle put in place of ours, and ours with its payload swapped: neither is read
        for forged in (pickle.dumps(_Evil(marker)), good.replace(ours, evil)):
            path.write_bytes(forged)
            try:
                manager.load_input(context)
            except ValueError as err:
                assert "refusing to unpickle" in str(err) and "base_models.pkl" in str(err)
            else:
                pytest.fail("a forged pickle was loaded")
            assert not marker.exists()


def test_atomic_writes_sync_the_folder_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_mode), real(fd)))
    write_atomic(tmp_path / "x.parquet", lambda f: f.write(b"data"))
    assert [stat.S_ISDIR(m) for m in synced] == [False, True]  # the file, then its folder


def test_peak_memory_windows_see_an_allocation_and_forget_it():
    import numpy as np

    from assets._meta import measure_peak, peak_rss_mib, start_peak_window

    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("the platform cannot reset a process's peak RSS (Linux /proc only)")
    start_peak_window()
    before = peak_rss_mib()
    parts: dict[str, float] = {}
    with measure_peak(parts, "block"):
        block = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
        del block
    assert parts["block"] >= before + 250  # the block's own peak
    assert peak_rss_mib() >= before + 250  # and the window's, kept across the inner reset
    start_peak_window()  # a new window (the next step) no longer sees it
    assert peak_rss_mib() < before + 150
