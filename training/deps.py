"""Lazy imports of the heavy training dependencies, with an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

HINT = "pip install -e '.[train]' (torch must be the CPU build: pip install torch==2.13.0 first)"


def require(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"{name} is needed for training/evaluation but is not installed; {HINT}") from exc
