"""Batch tagging of historical logs (local processes or Ray) and the distribution report.

Everything heavy (pyarrow, duckdb, matplotlib, tqdm, ray) is imported inside the functions that need it, so
``import classifier`` and ``import classifier.batch`` stay light. Install with ``pip install prompt-tagger[batch]``
(and ``[ray]`` for ``--engine ray``).
"""

from __future__ import annotations

INSTALL_HINT = "pip install 'prompt-tagger[batch]'"


def need(module: str, extra: str = "batch"):
    """Import an optional dependency or fail with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module} is needed for this command; install it with "
                          f"pip install 'prompt-tagger[{extra}]'") from exc
