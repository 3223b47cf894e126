"""Hostile input: unsafe YAML, oversized files and decompression bombs are refused with a
clear message; the UIs bind to the loopback interface only."""

import gzip
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
