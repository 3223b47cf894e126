"""The parquet lake: polars frames as parquet, other artefacts pickled; every write atomic."""

import pickle
from pathlib import Path

import polars as pl
from dagster import ConfigurableIOManager, InputContext, OutputContext

from pipelines.atomic import write_atomic


class LakeIOManager(ConfigurableIOManager):
    """``<base_dir>/<asset>.parquet`` for polars frames, ``<asset>.pkl`` for anything else
    (fitted models, result objects). Partitioned assets get ``<asset>/<partition>.<ext>``."""

    base_dir: str

    def _stem(self, context: OutputContext | InputContext) -> Path:
        path = Path(self.base_dir, *context.asset_key.path)
        if context.has_asset_partitions:
            path = path / context.asset_partition_key
        return path

    def handle_output(self, context: OutputContext, obj: object) -> None:
        stem = self._stem(context)
        if isinstance(obj, pl.DataFrame):
            path = write_atomic(stem.with_suffix(".parquet"), lambda f: obj.write_parquet(f))
            stale = stem.with_suffix(".pkl")
        else:
            path = write_atomic(
                stem.with_suffix(".pkl"),
                lambda f: pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL),
            )
            stale = stem.with_suffix(".parquet")
        stale.unlink(missing_ok=True)
        context.add_output_metadata({"path": str(path), "bytes": path.stat().st_size})

    def load_input(self, context: InputContext) -> object:
        stem = self._stem(context)
        parquet = stem.with_suffix(".parquet")
        if parquet.exists():
            return pl.read_parquet(parquet)
        with stem.with_suffix(".pkl").open("rb") as handle:
            return pickle.load(handle)
