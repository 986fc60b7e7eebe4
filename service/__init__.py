"""HTTP service: FastAPI routes, micro-batching, the SQLite statistics store and the dashboard.

Thin by design: it calls ``classifier`` and never imports torch, transformers or scikit-learn.
"""

from __future__ import annotations

from .settings import Settings

__all__ = ["Settings", "create_app"]


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003 - re-exported lazily so `import service` stays light
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)
