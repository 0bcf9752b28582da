"""Running a plain Python function as a Ray job, and getting its result back. Orchestrator-neutral.

The function and its arguments are pickled with Ray's own cloudpickle (``ray.cloudpickle``, so the
cluster unpickles them with the Ray it already has) into a small package: ``payload.pkl``,
``meta.json`` and ``__main__.py`` (``core.function_entry``). The package travels with the submission as
a ``py_modules`` entry, which the Ray Jobs SDK uploads to the cluster; the entrypoint is
``python -m <package>``. The function's own module (a DAG file, a flow file) is pickled by value, so
the cluster needs none of the caller's code.

The job prints one marker line at its end (``KUBERAY-FUNCTION:<kind>:<base64>``): the pickled result, the
path a large result was written to, or the error and its traceback. ``read_outcome`` finds it in the
job's log; ``is_marker_line`` lets log sinks keep it out of task logs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import re
import shutil
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from kuberay_provider.core.errors import KubeRayProviderError

log = logging.getLogger(__name__)

MARKER = "KUBERAY-FUNCTION:"
DEFAULT_MAX_RESULT_BYTES = 512 * 1024  # pickled; larger results need result_path
_MARKER_LINE = re.compile(rf"^{re.escape(MARKER)}(result|path|error):([A-Za-z0-9+/=]*)\s*$")
_IMAGE_PYTHON = re.compile(r"-py3(\d{1,2})(?:\b|-)")


class RemoteFunctionError(KubeRayProviderError):
    """The function raised inside the Ray job; the message carries the remote traceback."""

    def __init__(self, error_type: str, message: str, remote_traceback: str) -> None:
        text = f"the function raised {error_type} in the Ray job: {message}"
        if remote_traceback:
            text += f"\n--- remote traceback ---\n{remote_traceback.rstrip()}"
        super().__init__(text)
        self.error_type, self.remote_message, self.remote_traceback = error_type, message, remote_traceback


class FunctionResultMissing(KubeRayProviderError):
    """The job ended without reporting a result (killed, or its log is gone)."""


class VersionMismatch(KubeRayProviderError):
    """The Ray cluster runs a Python the pickled function cannot run on."""


def is_marker_line(line: str) -> bool:
    return line.startswith(MARKER)


def shown_line(line: str) -> str:
    """What a task log shows for a log line: a result marker shrinks to its size."""
    if not is_marker_line(line):
        return line
    kind = line[len(MARKER):].split(":", 1)[0]
    return f"<the function's {kind}: {len(line)} characters, read back by the task>"


@dataclass(frozen=True)
class FunctionCall:
    """A function and the arguments to call it with, and what to do with its result."""

    function: Callable[..., Any]
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    result_path: str | None = None  # write the (pickled) result there instead of returning it inline
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES

    @property
    def name(self) -> str:
        return getattr(self.function, "__qualname__", getattr(self.function, "__name__", "function"))

    def payload(self) -> bytes:
        import ray.cloudpickle as cloudpickle

        module = sys.modules.get(getattr(self.function, "__module__", "") or "")
        by_value = module is not None and module.__name__ not in ("__main__", "builtins") and not _is_installed(module)
        if by_value:
            cloudpickle.register_pickle_by_value(module)
        try:
            return cloudpickle.dumps((self.function, tuple(self.args), dict(self.kwargs)))
        finally:
            if by_value:
                cloudpickle.unregister_pickle_by_value(module)

    def meta(self) -> dict[str, Any]:
        import ray

        return {"marker": MARKER, "python": list(sys.version_info[:2]), "ray": ray.__version__, "function": self.name,
                "result_path": self.result_path or "", "max_result_bytes": self.max_result_bytes}


def _is_installed(module: Any) -> bool:
    """A module from site-packages or the standard library: the cluster imports it by name, not by value."""
    path = str(getattr(module, "__file__", "") or "")
    stdlib = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib")}
    return not path or "site-packages" in path or "dist-packages" in path or any(path.startswith(lib + "/") for lib in stdlib)


@contextlib.contextmanager
def shipped(call: FunctionCall) -> Iterator["ShippedFunction"]:
    """The package on local disk for as long as the submission needs it (the SDK uploads it)."""
    payload, meta = call.payload(), call.meta()
    digest = hashlib.sha256(payload + json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    package = f"kuberay_fn_{digest}"
    root = Path(tempfile.mkdtemp(prefix="kuberay-fn-"))
    try:
        folder = root / package
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        (folder / "payload.pkl").write_bytes(payload)
        (folder / "meta.json").write_text(json.dumps(meta))
        shutil.copyfile(Path(__file__).with_name("function_entry.py"), folder / "__main__.py")
        yield ShippedFunction(package=package, folder=str(folder), meta=meta, payload_bytes=len(payload))
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class ShippedFunction:
    package: str
    folder: str
    meta: Mapping[str, Any]
    payload_bytes: int

    @property
    def entrypoint(self) -> str:
        return f"python -m {self.package}"

    def runtime_env(self, base: Mapping[str, Any] | None) -> dict[str, Any]:
        """The user's runtime_env with the package added to ``py_modules``."""
        env = dict(base or {})
        env["py_modules"] = [*list(env.get("py_modules") or []), self.folder]
        return env


@dataclass(frozen=True)
class FunctionOutcome:
    kind: str  # "result" | "path"
    value: Any


def read_outcome(log_text: str) -> FunctionOutcome:
    """The function's result (or the path it was written to) from the job's log; RemoteFunctionError for
    an exception it raised; FunctionResultMissing when the job reported nothing."""
    found = None
    for line in log_text.splitlines():
        match = _MARKER_LINE.match(line.strip())
        if match:
            found = match
    if found is None:
        raise FunctionResultMissing("the Ray job's log holds no result of the function (was the job stopped?)")
    kind, data = found.group(1), base64.b64decode(found.group(2))
    if kind == "error":
        error = json.loads(data)
        qualified = ".".join(part for part in (error.get("module"), error.get("type")) if part and part != "builtins")
        raise RemoteFunctionError(qualified or "an exception", error.get("message", ""), error.get("traceback", ""))
    if kind == "path":
        return FunctionOutcome("path", data.decode())
    import pickle

    return FunctionOutcome("result", pickle.loads(data))  # noqa: S301 - the user's own job on the user's own cluster


# --- versions ------------------------------------------------------------------------------------


def python_of_image(image: str) -> tuple[int, int] | None:
    """Python of a Ray image from its tag (``rayproject/ray:2.52.0-py311`` -> (3, 11)); None: not in the tag."""
    match = _IMAGE_PYTHON.search(image.rsplit("/", 1)[-1])
    return (3, int(match.group(1))) if match else None


def head_image(cluster_spec: Mapping[str, Any] | None) -> str:
    containers = ((((cluster_spec or {}).get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return str((containers[0] or {}).get("image") or "") if containers else ""


def version_problems(*, cluster_python: tuple[int, int] | None, cluster_ray: str | None) -> tuple[list[str], list[str]]:
    """(errors, warnings) comparing this process with the Ray cluster, before anything is submitted.

    Python must match to the minor version: the function is pickled by value, with bytecode. Ray may
    differ; a different major.minor is worth a warning, since the pickle names ``ray.cloudpickle``
    helpers and the function may use APIs that moved.
    """
    import ray

    errors, warnings = [], []
    here = tuple(sys.version_info[:2])
    if cluster_python is not None and cluster_python != here:
        errors.append(f"the Ray cluster runs Python {cluster_python[0]}.{cluster_python[1]} (from its image) but this worker "
                      f"pickles the function with Python {here[0]}.{here[1]}: functions travel as bytecode, so use an "
                      "image with the same Python (e.g. a -py3XX tag)")
    if cluster_ray and _minor(cluster_ray) != _minor(ray.__version__):
        warnings.append(f"the Ray cluster runs Ray {cluster_ray} and this worker Ray {ray.__version__}: the function "
                        "is pickled with this worker's ray.cloudpickle; keep them on the same minor version")
    return errors, warnings


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_versions(cluster_python: tuple[int, int] | None, cluster_ray: str | None, warn: Callable[[str], None]) -> None:
    errors, warnings = version_problems(cluster_python=cluster_python, cluster_ray=cluster_ray)
    for line in warnings:
        warn(line)
    if errors:
        raise VersionMismatch("; ".join(errors))
