"""MLflow plumbing: the embedded store, its location and experiments, retries on a busy store.

The default store is ``sqlite:///mlflow.db`` in the working folder with artifacts in
``mlruns/`` beside it; ``MLFLOW_TRACKING_URI`` or the config's ``mlflow.tracking_uri``
override it. What identifies the data of a run (fingerprints, salted keys) is in
:mod:`crs_ml.fingerprints`.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

from crs_ml.config import secret_in_uri, secret_query_key
from crs_ml.errors import ConfigError


def resolve_tracking_uri(configured: str | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` > the config's URI > ``sqlite:///<cwd>/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if not uri:
        uri = f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    return uri


def shown_uri(uri: str) -> str:
    """``uri`` to print or write: a password or a secret query parameter in it (from
    ``MLFLOW_TRACKING_URI``; the config refuses both, :func:`crs_ml.config.secret_in_uri`)
    replaced by ``***``."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    if not secret_in_uri(uri):
        return uri
    parts = urlsplit(uri)
    if parts.password:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username}:***@{host}")
    query = [(k, "***" if secret_query_key(k) else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]  # fmt: skip
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def existing_tracking_uri(configured: str | None = None) -> str:
    """:func:`resolve_tracking_uri` for commands that only read runs (``compare``): a SQLite
    store that does not exist is a :class:`~crs_ml.errors.ConfigError` naming the URI, not
    an empty ``mlflow.db`` created in the current folder."""
    uri = resolve_tracking_uri(configured)
    if missing_store(uri) is not None:
        raise ConfigError(
            f"no MLflow tracking store at {uri}: run this in the folder where you trained, "
            "or set MLFLOW_TRACKING_URI"
        )
    return uri


def missing_store(uri: str) -> Path | None:
    """The database file of a SQLite store that does not exist (which MLflow would create
    empty on first use), else None."""
    db = sqlite_path(uri)
    return db if db is not None and not db.is_file() else None


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :].split("?", 1)[0])


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store go to ``mlruns/`` beside the database file."""
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.resolve().parent / "mlruns").as_uri()


def retry(fn, *args, attempts: int = 8, **kwargs):
    """Call ``fn`` again when SQLite says the database is locked (several writers)."""
    delay = 0.25
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # mlflow wraps sqlalchemy errors in its own types
            text = str(exc).lower()
            transient = "database is locked" in text or "unique constraint" in text
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 4.0)
    return None  # pragma: no cover


@contextmanager
def _store_lock(uri: str):
    """Exclusive lock beside a SQLite store while it and its experiments are created.

    Several processes creating a fresh store at once race in MLflow's schema migration;
    holding ``<db>.lock`` (flock, released when the process dies) serialises that step.
    """
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    import fcntl

    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def setup_tracking(configured_uri: str | None, experiment: str) -> tuple[str, str]:
    """Point mlflow at the store, create the store and the experiment if needed.

    Returns ``(tracking_uri, experiment_id)``. Creation happens under a file lock and is
    retried when SQLite reports a locked database, so concurrent processes can start
    against one fresh store (MLflow itself sets a 20 s SQLite busy timeout per session).
    """
    import mlflow

    uri = resolve_tracking_uri(configured_uri)
    mlflow.set_tracking_uri(uri)

    def _get_or_create() -> str:
        found = mlflow.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        root = artifact_root(uri)
        location = f"{root}/{_safe_name(experiment)}" if root else None
        return mlflow.create_experiment(experiment, artifact_location=location)

    with _store_lock(uri):
        experiment_id = retry(_get_or_create)
    mlflow.set_experiment(experiment_id=experiment_id)
    return uri, experiment_id


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "experiment"
