"""The model registry behind the assets' ``ModelRegistry`` port: registering a model with its
digest, and loading a registered model without trusting its artifact.

MLflow's own loaders follow the artifact: its ``MLmodel`` names the loader module, puts the
artifact's ``code_paths`` on ``sys.path`` and carries the skops trusted-type list used to load
it, so whoever can write the artifact store can run code in the scorer. Here none of that is
read. A model loads only if

- its version is in the configured registry and its files lie in that registry's artifact
  store (the home's ``mlartifacts`` folder, or the tracking server's ``mlflow-artifacts:``);
- its ``model.skops`` has the SHA-256 recorded when it was registered (tag ``model_sha256``);
- skops finds in it no type outside :data:`TRUSTED_TYPES`, a list kept in this code (skops
  builds only those and its own safe built-ins: no pickle, no import of other code).

Anything else raises :class:`ModelRefused` (``assets/ports.py``), which says which rule
failed.
"""

import hashlib
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import skops.io
from skops.io.exceptions import UntrustedTypesFoundException

from assets.ports import REGISTERED_MODEL, ModelRefused

__all__ = ["REGISTERED_MODEL", "ModelRefused", "MLflowRegistry", "load_registered"]
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
        "models.learning.double_ensemble.DoubleEnsembleRegressor",
        "models.learning.estimators.ColumnSignal",
        "models.microstructure.models.LobModel",
        "models.microstructure.models.OFIRegressionClassifier",
        "models.learning.nets.TorchRegressor",
        "models.learning.stacking.StackedEnsemble",
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBRegressor",
    }
)


def trusted_types(model: object) -> list[str]:
    """The types skops must be told to trust to load ``model``; all must be in
    :data:`TRUSTED_TYPES`, else ``TypeError`` (before anything is registered)."""
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    foreign = sorted(set(untrusted) - TRUSTED_TYPES)
    if foreign:
        raise TypeError(
            f"the model holds types outside pipelines/registry.py's TRUSTED_TYPES: {foreign}"
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


class MLflowRegistry:
    """The assets' ``ModelRegistry`` port on MLflow's model registry (``tracking_uri``; a
    local ``artifact_root`` that registered files must lie in, None with a tracking server)."""

    def __init__(self, tracking_uri: str, artifact_root: Path | None = None):
        import mlflow

        self.client = mlflow.MlflowClient(tracking_uri)
        self.artifact_root = artifact_root

    def register(
        self,
        model: object,
        *,
        name: str,
        artifact: str,
        example,
        output,
        pip_requirements: list[str],
    ) -> str:
        """Log ``model`` into the active run as ``artifact`` (skops, its types checked against
        :data:`TRUSTED_TYPES` first), register it as a new version of ``name`` with the digest
        of its file, and point ``@challenger`` at it; returns the version. ``example`` and
        ``output``: an input frame and the model's output on it, for the signature."""
        import mlflow.sklearn
        from mlflow.models import infer_signature

        info = mlflow.sklearn.log_model(
            model,
            name=artifact,
            registered_model_name=name,
            signature=infer_signature(example, output),
            pip_requirements=pip_requirements,
            # no code_paths: a loader would put them on sys.path; our scorers import our code
            # and load the file through load_registered (its types, its recorded digest)
            skops_trusted_types=trusted_types(model),
        )
        version = info.registered_model_version
        location = self.client.get_model_version_download_uri(name, version)
        record_digest(self.client, version, location, self.client.tracking_uri, name=name)
        self.client.set_registered_model_alias(name, "challenger", version)
        return version

    def version(self, name: str, alias: str):
        """The version ``name@alias`` (``.version``, ``.tags``, ``.creation_timestamp``), or
        None when no version holds the alias."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)

    def tag_version(self, name: str, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)

    def describe(self, name: str, description: str, version: str | None = None) -> None:
        """The registered model's description, or one version's."""
        if version is None:
            self.client.update_registered_model(name, description=description)
        else:
            self.client.update_model_version(name, version, description=description)

    def load(self, name: str, alias: str):
        """The model ``name@alias``, checked as the module says (else :class:`ModelRefused`)."""
        model, _ = load_registered(self.client, name, alias=alias, artifact_root=self.artifact_root)
        return model
