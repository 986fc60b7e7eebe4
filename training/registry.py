"""Model versions under ``models/``: one folder per version, ``models/default`` is the served copy.

* ``models/<name>/``: a version (manifest with lineage, head, graph, tokenizer, ``added.jsonl``).
* ``models/default/``: what ``Classifier.load()`` and the service load. Promotion copies the version's files into
  a staging folder next to it and swaps it in with two renames, so a reader sees the old folder or the new one;
  the service then swaps its in-memory model (``POST /admin/reload`` or the file watch).
* ``models/registry.json``: which version is served and the promotion history (with each gate's outcome).

The first promotion archives the model it replaces as ``models/<its version>/`` when no version folder holds it,
so that ``rollback`` can return to it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

from classifier.model import REPO

SERVED = "default"
REGISTRY = "registry.json"


class RegistryError(ValueError):
    """A version that does not exist, or a registry operation that cannot be done."""


def models_root() -> Path:
    return Path(os.environ.get("PROMPT_TAGGER_MODELS", REPO / "models"))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "manifest.json"
    if not path.exists():
        raise RegistryError(f"{folder}: no manifest.json; expected a model folder made by `prompt-tagger train`")
    return json.loads(path.read_text())


class Registry:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else models_root()
        self.path = self.root / REGISTRY

    # -- state ------------------------------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        if self.path.exists():
            return json.loads(self.path.read_text())
        return {"current": None, "history": []}

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, ensure_ascii=False) + "\n")
        tmp.replace(self.path)

    @property
    def served(self) -> Path:
        return self.root / SERVED

    def versions(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and p.name != SERVED and not p.name.startswith(".")
                      and (p / "manifest.json").exists()) if self.root.exists() else []

    def folder(self, name: str) -> Path:
        if name == SERVED:
            return self.served
        p = self.root / name
        if name.startswith(".") or "/" in name or not (p / "manifest.json").exists():
            raise RegistryError(f"no model version {name!r} under {self.root}; versions: {self.versions()}")
        return p

    def served_version(self) -> str | None:
        return read_manifest(self.served).get("version") if (self.served / "manifest.json").exists() else None

    def current_name(self) -> str | None:
        """The version folder whose model is served (by manifest version), or None."""
        v = self.served_version()
        for name in self.versions():
            if read_manifest(self.root / name).get("version") == v:
                return name
        return None

    def next_name(self) -> str:
        nums = [int(n[1:]) for n in self.versions() if n[:1] == "v" and n[1:].isdigit()]
        return f"v{max(nums, default=1) + 1}"

    def rows(self) -> list[dict[str, Any]]:
        cur = self.current_name()
        out = []
        for name in self.versions():
            m = read_manifest(self.root / name)
            gold = m.get("metrics", {}).get("gold", {})
            out.append({"name": name, "version": m.get("version"), "parent": m.get("parent"),
                        "created_at": m.get("created_at"), "labels": len(m.get("labels", [])),
                        "rows": m.get("data", {}).get("counts", {}).get("total"),
                        "gold_strict_macro_f1": gold.get("strict_macro_f1"), "served": name == cur})
        return out

    # -- promotion --------------------------------------------------------------------------------------
    def archive_served(self) -> str | None:
        """Copy the served model into a version folder when none holds it; returns that folder's name."""
        if not (self.served / "manifest.json").exists():
            return None
        name = self.current_name()
        if name is None:
            name = str(read_manifest(self.served)["version"])
            shutil.copytree(self.served, self.root / name)
            state = self.load()
            state["history"].append({"action": "archive", "name": name, "version": name, "at": _now()})
            self.save(state)
        return name

    def swap_in(self, name: str) -> Path:
        """Make ``models/default`` a copy of version ``name`` (staging folder + two renames)."""
        src = self.folder(name)
        staging = self.root / f".{SERVED}.staging"
        old = self.root / f".{SERVED}.old"
        for p in (staging, old):
            if p.exists():
                shutil.rmtree(p)
        shutil.copytree(src, staging)
        if self.served.exists():
            os.rename(self.served, old)
        os.rename(staging, self.served)
        if old.exists():
            shutil.rmtree(old)
        return self.served

    def promote(self, name: str, gate: dict[str, Any] | None = None, forced: bool = False,
                action: str = "promote") -> dict[str, Any]:
        src = self.folder(name)
        previous = self.archive_served()
        self.swap_in(name)
        entry = {"action": action, "name": name, "version": read_manifest(src).get("version"), "at": _now(),
                 "previous": previous, "forced": forced}
        if gate is not None:
            entry["gate"] = gate
        state = self.load()
        state["current"] = name
        state["history"].append(entry)
        self.save(state)
        return entry

    def record_rejection(self, name: str, gate: dict[str, Any]) -> None:
        state = self.load()
        state["history"].append({"action": "rejected", "name": name, "version": read_manifest(self.folder(name))
                                 .get("version"), "at": _now(), "gate": gate})
        self.save(state)

    def rollback_target(self) -> str:
        """The version that the current one replaced when it was promoted (repeat to walk further back)."""
        cur = self.current_name()
        for h in reversed(self.load()["history"]):
            if h["action"] == "promote" and h["name"] == cur and h.get("previous") not in (None, cur):
                return str(h["previous"])
        raise RegistryError(f"nothing to roll back to: {self.path} has no promotion of {cur!r} that replaced "
                            "another version; use `prompt-tagger models promote NAME --force`")

    # -- gold-score cache --------------------------------------------------------------------------------
    def cached_scores(self, version: str, gold_sha: str, engine: str) -> dict[str, Any] | None:
        return self.load().get("gold_scores", {}).get(f"{version}|{gold_sha[:16]}|{engine}")

    def cache_scores(self, version: str, gold_sha: str, engine: str, scores: dict[str, Any]) -> None:
        state = self.load()
        state.setdefault("gold_scores", {})[f"{version}|{gold_sha[:16]}|{engine}"] = scores
        self.save(state)
