"""Loading a registered model without trusting its artifact.

MLflow's own loaders follow the artifact: its ``MLmodel`` names the loader module, puts the
artifact's ``code_paths`` on ``sys.path`` and carries the skops trusted-type list used to load
it, so whoever can write the artifact store can run code in the scorer. Here none of that is
read. A model loads only if

- its version is in the configured registry and its files lie in that registry's artifact
  store (the home's ``mlartifacts`` folder, or the tracking server's ``mlflow-artifacts:``);
- its ``model.skops`` has the SHA-256 recorded when it was registered (tag ``model_sha256``);
- skops finds in it no type outside :data:`TRUSTED_TYPES`, a list kept in this code (skops
  builds only those and its own safe built-ins: no pickle, no import of other code).

Anything else raises :class:`ModelRefused`, which says which rule failed.
"""

import hashlib
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import skops.io
from skops.io.exceptions import UntrustedTypesFoundException

REGISTERED_MODEL = "alphaforge-ensemble"
MODEL_FILE = "model.skops"
DIGEST_TAG = "model_sha256"
# Every type our registered models are made of beyond skops' own trusted set (numpy arrays,
# scikit-learn's linear models, pipelines, scalers, imputers...): the ensemble, the zoo's
# models and their boosters; the order-book model (``alphaforge-lob``: the LightGBM or the
# order-flow regression classifier in its wrapper). A new model type is added here after
# review; registering a model with any other type fails (``trusted_types``), so what registers
# always loads.
TRUSTED_TYPES = frozenset(
    {
        "collections.OrderedDict",
        "lightgbm.basic.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
        "models.double_ensemble.DoubleEnsembleRegressor",
        "models.estimators.ColumnSignal",
        "models.microstructure.models.LobModel",
        "models.microstructure.models.OFIRegressionClassifier",
        "models.nets.TorchRegressor",
        "models.stacking.StackedEnsemble",
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBRegressor",
    }
)


class ModelRefused(ValueError):
    """A model that is not one of our registry's, or whose artifact cannot be trusted."""


def trusted_types(model: object) -> list[str]:
    """The types skops must be told to trust to load ``model``; all must be in
    :data:`TRUSTED_TYPES`, else ``TypeError`` (before anything is registered)."""
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    foreign = sorted(set(untrusted) - TRUSTED_TYPES)
    if foreign:
        raise TypeError(
            f"the model holds types outside assets/registry.py's TRUSTED_TYPES: {foreign}"
        )
    return untrusted


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_digest(
    client,
    version: str,
    model_uri: str,
    tracking_uri: str | None = None,
    name: str = REGISTERED_MODEL,
) -> str:
    """Tag the registered ``version`` of ``name`` with the SHA-256 of its ``model.skops``, as
    stored."""
    digest = file_digest(_fetch(f"{model_uri.rstrip('/')}/{MODEL_FILE}", tracking_uri))
    client.set_model_version_tag(name, version, DIGEST_TAG, digest)
    return digest


def load_registered(
    client,
    name: str,
    alias: str | None = None,
    version: str | None = None,
    artifact_root: Path | None = None,
):
    """The model registered as ``name`` under ``alias`` (or ``version``), checked as the module
    says; returns ``(model, model_version)``. ``artifact_root``: the local artifact store
    (``file:`` locations must lie in it); ``mlflow-artifacts:`` locations are served by the
    configured tracking server."""
    from mlflow.exceptions import MlflowException

    try:
        found = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, version)
        )
    except MlflowException as err:
        raise ModelRefused(f"no model {name}@{alias or version} in the registry ({err})") from None
    where = f"{name} version {found.version}"
    location = client.get_model_version_download_uri(name, found.version)
    parts = urlsplit(location)
    if parts.scheme == "file":
        path = Path(unquote(parts.path)).resolve()
        root = Path(artifact_root).resolve() if artifact_root else None
        if root is None or not path.is_relative_to(root):
            raise ModelRefused(
                f"refusing {where}: its files ({location}) lie outside the registry's artifact "
                f"store ({root or 'none configured'})"
            )
        location = path.as_uri()  # read what was checked, not the name again
    elif parts.scheme != "mlflow-artifacts":
        raise ModelRefused(
            f"refusing {where}: its files are at {parts.scheme}://{parts.netloc}, not in the "
            "registry's artifact store"
        )
    data = _fetch(f"{location.rstrip('/')}/{MODEL_FILE}", client.tracking_uri, where)
    expected = found.tags.get(DIGEST_TAG)
    if not expected or file_digest(data) != expected:
        raise ModelRefused(
            f"refusing {where}: its {MODEL_FILE} is not the file registered "
            + (
                "(its SHA-256 differs from the one recorded)"
                if expected
                else "(no digest was recorded for it)"
            )
            + ": the artifact was changed or replaced; register the model again"
        )
    try:
        model = skops.io.loads(data, trusted=sorted(TRUSTED_TYPES))
    except UntrustedTypesFoundException as err:
        raise ModelRefused(f"refusing {where}: {err}") from None
    except Exception as err:  # noqa: BLE001 (a file skops cannot read is refused, named)
        raise ModelRefused(
            f"refusing {where}: {MODEL_FILE} is not a readable skops file ({err})"
        ) from None
    return model, found


def _fetch(uri: str, tracking_uri: str | None, where: str = "") -> bytes:
    """The bytes of one artifact file: read directly from a local store, downloaded otherwise."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
        if not path.is_file():
            raise ModelRefused(f"refusing {where or uri}: it has no {MODEL_FILE}")
        return path.read_bytes()
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri
            )
        except Exception as err:  # noqa: BLE001
            raise ModelRefused(
                f"refusing {where or uri}: its {MODEL_FILE} cannot be fetched ({err})"
            ) from None
        return Path(local).read_bytes()
