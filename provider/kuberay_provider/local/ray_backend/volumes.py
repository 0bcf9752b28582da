"""ConfigMap volumes made real: the files land in a local directory and container paths are rewritten.

KubeRay's samples mount their code from a ConfigMap (e.g. at /home/ray/samples) and run
``python /home/ray/samples/sample_code.py``; locally that path becomes ``<cluster dir>/home/ray/samples/...``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .base import ConfigMapMount


def literal_replacement(text: str) -> Callable[[re.Match[str]], str]:
    """A re.sub replacement that inserts ``text`` as it is (a plain string would have its backslashes read)."""
    return lambda _match: text


class PathMap:
    """Container mount paths -> local directories, applied to entrypoints and runtime_env paths."""

    def __init__(self, mapping: Mapping[str, str] | None = None) -> None:
        # Longest first, so /a/b wins over /a.
        self._mapping = dict(sorted((mapping or {}).items(), key=lambda item: -len(item[0])))

    @property
    def mapping(self) -> dict[str, str]:
        return dict(self._mapping)

    def rewrite(self, text: str) -> str:
        for container_path, local_path in self._mapping.items():
            pattern = r"(?<![\w./-])" + re.escape(container_path.rstrip("/")) + r"(?=/|\s|$|[\"'):;,])"
            text = re.sub(pattern, literal_replacement(local_path), text)
        return text

    def rewrite_runtime_env(self, runtime_env: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """working_dir and py_modules may name mounted paths; the rest is left alone."""
        if runtime_env is None:
            return None
        env = dict(runtime_env)
        if isinstance(env.get("working_dir"), str):
            env["working_dir"] = self.rewrite(env["working_dir"])
        if isinstance(env.get("py_modules"), list):
            env["py_modules"] = [self.rewrite(m) if isinstance(m, str) else m for m in env["py_modules"]]
        return env


def materialise(mounts: Iterable[ConfigMapMount], root: Path) -> PathMap:
    """Write each mount's files under ``root`` + its mount path; return the path mapping."""
    mapping: dict[str, str] = {}
    for mount in mounts:
        local_dir = root / mount.mount_path.strip("/")
        local_dir.mkdir(parents=True, exist_ok=True)
        for relative, content in mount.files.items():
            target = (local_dir / relative).resolve()
            if not target.is_relative_to(local_dir.resolve()):
                raise ValueError(f"ConfigMap item path {relative!r} escapes its mount {mount.mount_path}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        mapping[mount.mount_path.rstrip("/") or "/"] = str(local_dir)
    return PathMap(mapping)
