"""Model resolution: a registry alias, an MLflow URI or a folder -> the model :class:`Bundle`.

One function, :func:`open_model`, turns whatever a user names a model by into its bundle and
where it came from (registered name, version, training run): a bundle folder, an exported or
downloaded MLflow model folder, a loaded pyfunc model, or a URI (``models:/name@alias``,
``models:/name/3``, ``runs:/<id>/model``) fetched from the tracking store.
:func:`resolve_model` is the bundle alone. Commands resolve a model once per run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from crs_ml.errors import ModelError
from crs_ml.modeling.bundle import Bundle, load_model_folder
from crs_ml.scoring.score import as_bundle
from crs_ml.tracking.store import missing_store, resolve_tracking_uri


def download_model(uri: str, dst: str | Path) -> Path:
    """Download an MLflow model URI (models:/, runs:/, ...) into ``dst``; returns its folder."""
    import mlflow

    _use_store(uri)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst))
    except Exception as exc:  # mlflow raises its own types for unknown names and aliases
        raise ModelError(
            f"cannot fetch model '{uri}' from the tracking store {mlflow.get_tracking_uri()}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    return Path(local)


def _use_store(uri: str) -> None:
    """Point MLflow at the tracking store (MLFLOW_TRACKING_URI, else ./mlflow.db), refusing
    a SQLite store that does not exist (MLflow would create an empty one)."""
    import mlflow

    if mlflow.is_tracking_uri_set():
        return
    store = resolve_tracking_uri(None)
    db = missing_store(store)
    if db is not None:
        raise ModelError(
            f"no MLflow tracking store at {db} to resolve '{uri}': set MLFLOW_TRACKING_URI, "
            "or pass an exported model folder (crs-ml export)"
        )
    mlflow.set_tracking_uri(store)


def _model_version(client, uri: str):
    """The registered version a ``models:/`` URI names (version, stage, ``latest`` or alias,
    resolved as MLflow resolves them), or None for a logged model id (``models:/m-...``)."""
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    found = get_model_name_and_version(client, uri)
    return client.get_model_version(*found) if len(found) == 2 else None


def check_model_uri(uri: str) -> None:
    """That a ``models:/`` URI names a registered version or alias in the tracking store,
    without fetching it (``crs-ml serve`` checks before it hands over to ``mlflow models
    serve``, whose failure is a traceback); a :class:`ModelError` naming what is missing."""
    from mlflow import MlflowClient

    _use_store(uri)
    if not uri.startswith("models:/"):
        return
    try:
        _model_version(MlflowClient(), uri)
    except Exception as exc:
        raise ModelError(
            f"cannot resolve model '{uri}' in the tracking store {resolve_tracking_uri(None)}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None


def model_info(uri: str) -> dict[str, Any]:
    """Registered name, version and training run of an MLflow model URI (what is known)."""
    import mlflow
    from mlflow import MlflowClient

    info: dict[str, Any] = {"uri": uri}
    try:
        client = MlflowClient()
        if uri.startswith("models:/"):
            rest = uri[len("models:/") :].strip("/")
            mv = _model_version(client, uri)
            if mv is None:  # a logged model id (models:/m-...)
                info["model_run_id"] = mlflow.get_logged_model(rest).source_run_id
            else:
                info.update(model_name=mv.name, model_version=str(mv.version))
                info["model_run_id"] = mv.run_id
        elif uri.startswith("runs:/"):
            info["model_run_id"] = uri[len("runs:/") :].split("/", 1)[0]
    except Exception:  # provenance is informative; the model itself was already fetched
        pass
    return info


def open_model(model: str, workdir: Path) -> tuple[Bundle, dict[str, Any]]:
    """(Bundle, info) from a bundle folder, an exported MLflow model folder or a URI.

    URIs are downloaded into ``workdir`` (the bundle's folder stays there while it is used).
    """
    path = Path(model).expanduser()
    if path.exists():
        bundle = load_model_folder(path)
        return bundle, {"uri": str(model)}
    if ":/" not in model:
        raise ModelError(f"model '{model}' is neither an existing folder nor an MLflow model URI")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    local = download_model(model, workdir)
    bundle = load_model_folder(local)
    return bundle, model_info(model)


def resolve_model(model: Any) -> Bundle:
    """A :class:`Bundle` from a Bundle, a loaded pyfunc model, a bundle folder, an exported
    MLflow model folder, or an MLflow model URI (``models:/crs-severity@champion``,
    ``runs:/<id>/model``)."""
    if isinstance(model, Bundle) or hasattr(model, "unwrap_python_model"):
        return as_bundle(model)
    with tempfile.TemporaryDirectory(prefix="crs_ml_model_") as tmp:
        return open_model(str(model), Path(tmp))[0]
