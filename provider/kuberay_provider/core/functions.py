"""Running a plain Python function as a Ray job, and getting its result back. Orchestrator-neutral.

The function and its arguments are pickled with Ray's own cloudpickle (``ray.cloudpickle``, so the
cluster unpickles them with the Ray it already has) into a small package: ``payload.pkl``,
``meta.json``, ``key`` (the try's key, ``core.function_keys``) and ``__main__.py``
(``core.function_entry``). The package travels with the submission as a ``py_modules`` entry, which the
Ray Jobs SDK uploads to the cluster; the entrypoint is ``python -m kuberay_fn_<digest>``. The function's
own module (a DAG file, a flow file) is pickled by value, so the cluster needs none of the caller's code.

The job prints one marker line at its end (``KUBERAY-FUNCTION:<kind>:<mac>:<base64>``): the result
(pickled, or JSON), the path a large result was written to, or the error and its traceback as text.
``read_outcome`` believes only lines whose ``<mac>`` this try's key authenticates, and checks that before
it decodes anything; other marker lines are counted and reported, never decoded. ``is_marker_line``
lets log sinks keep markers out of task logs.
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from kuberay_provider.core.errors import ConfigurationError, KubeRayProviderError, PermanentError
from kuberay_provider.core.function_keys import PACKAGE_PREFIX, TryKey, VerifiedJob, job_metadata, package_entrypoint

log = logging.getLogger(__name__)

MARKER = "KUBERAY-FUNCTION:"
DEFAULT_MAX_RESULT_BYTES = 512 * 1024  # encoded; larger results need result_path
RESULT_FORMATS = ("pickle", "json")
_KINDS = ("result", "json", "path", "error")  # "result" is pickled, "json" is JSON text
_MARKER_LINE = re.compile(rf"^{re.escape(MARKER)}(result|json|path|error):([0-9a-f]{{64}}):([A-Za-z0-9+/=]*)\s*$")
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
    """The job ended without an authenticated result (killed, its log is gone, or only forged markers)."""


class VersionMismatch(PermanentError):
    """The Ray cluster runs a Python the pickled function cannot run on."""


def is_marker_line(line: str) -> bool:
    return line.startswith(MARKER)


def shown_line(line: str) -> str:
    """What a task log shows for a log line: a marker shrinks to its size (unread: it may be forged)."""
    if not is_marker_line(line):
        return line
    kind = line[len(MARKER) :].split(":", 1)[0]
    return f"<the function's {kind if kind in _KINDS else 'marker'}: {len(line)} characters, read back by the task>"


@dataclass(frozen=True)
class FunctionCall:
    """A function and the arguments to call it with, and what to do with its result."""

    function: Callable[..., Any]
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    result_path: str | None = None  # write the (encoded) result there instead of returning it inline
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    result_format: str = "pickle"  # "json": no pickle crosses from the cluster to the worker

    def __post_init__(self) -> None:
        check_result_format(self.result_format)

    @property
    def name(self) -> str:
        return getattr(self.function, "__qualname__", getattr(self.function, "__name__", "function"))

    def payload(self) -> bytes:
        import ray.cloudpickle as cloudpickle

        # ray.cloudpickle has no annotations: these are the signatures used here.
        dumps: Callable[[object], bytes] = cloudpickle.dumps
        register_by_value: Callable[[ModuleType], None] = cloudpickle.register_pickle_by_value
        unregister_by_value: Callable[[ModuleType], None] = cloudpickle.unregister_pickle_by_value
        module = sys.modules.get(getattr(self.function, "__module__", "") or "")
        user_module = (
            module is not None and module.__name__ not in ("__main__", "builtins") and not _is_installed(module)
        )
        by_value = module if user_module else None
        if by_value is not None:
            register_by_value(by_value)
        try:
            return dumps((self.function, tuple(self.args), dict(self.kwargs)))
        finally:
            if by_value is not None:
                unregister_by_value(by_value)

    def meta(self) -> dict[str, Any]:
        import ray

        return {
            "marker": MARKER,
            "python": list(sys.version_info[:2]),
            "ray": ray.__version__,
            "function": self.name,
            "result_path": self.result_path or "",
            "max_result_bytes": self.max_result_bytes,
            "result_format": self.result_format,
        }


def check_result_format(result_format: str) -> str:
    if result_format not in RESULT_FORMATS:
        raise ConfigurationError(
            f"result_format must be one of {', '.join(map(repr, RESULT_FORMATS))}, got {result_format!r}"
        )
    return result_format


def _is_installed(module: Any) -> bool:
    """A module from site-packages or the standard library: the cluster imports it by name, not by value."""
    path = str(getattr(module, "__file__", "") or "")
    stdlib = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib")}
    return (
        not path
        or "site-packages" in path
        or "dist-packages" in path
        or any(path.startswith(lib + "/") for lib in stdlib)
    )


@contextlib.contextmanager
def shipped(call: FunctionCall, key: TryKey) -> Iterator[ShippedFunction]:
    """The package on local disk for as long as the submission needs it (the SDK uploads it). Its digest
    covers what runs (payload, meta, entry), not the key, which only the ``key`` file holds."""
    payload, meta = call.payload(), call.meta()
    entry = Path(__file__).with_name("function_entry.py").read_bytes()
    digest = hashlib.sha256(b"\0".join((payload, json.dumps(meta, sort_keys=True).encode(), entry))).hexdigest()[:32]
    package = f"{PACKAGE_PREFIX}{digest}"
    root = Path(tempfile.mkdtemp(prefix="kuberay-fn-"))  # 0700: only this user reads the key before upload
    try:
        folder = root / package
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        (folder / "payload.pkl").write_bytes(payload)
        (folder / "meta.json").write_text(json.dumps(meta))
        (folder / "key").write_text(key.key.hex())
        (folder / "__main__.py").write_bytes(entry)
        yield ShippedFunction(
            package=package,
            folder=str(folder),
            meta=meta,
            payload_bytes=len(payload),
            digest=digest,
            metadata=job_metadata(key, digest),
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class ShippedFunction:
    package: str
    folder: str
    meta: Mapping[str, Any]
    payload_bytes: int
    digest: str
    metadata: Mapping[str, str]  # for the Ray job's metadata: the key's id, the try, the digest (never the key)

    @property
    def entrypoint(self) -> str:
        return package_entrypoint(self.digest)

    def runtime_env(self, base: Mapping[str, Any] | None) -> dict[str, Any]:
        """The user's runtime_env with the package added to ``py_modules``."""
        env = dict(base or {})
        env["py_modules"] = [*list(env.get("py_modules") or []), self.folder]
        return env


@dataclass(frozen=True)
class FunctionOutcome:
    kind: str  # "result" | "path"
    value: Any
    ignored: int = 0  # marker lines that failed authentication (reported, never decoded)


@dataclass(frozen=True)
class MarkerScan:
    """A log's marker lines that ``job``'s key authenticates, as (kind, still-encoded payload) in order,
    and how many other marker lines there were. Nothing is decoded here."""

    authentic: tuple[tuple[str, str], ...]
    ignored: int

    @classmethod
    def of(cls, log_text: str, job: VerifiedJob) -> MarkerScan:
        authentic: list[tuple[str, str]] = []
        ignored = 0
        for raw in log_text.splitlines():
            line = raw.strip()
            if not is_marker_line(line):
                continue
            match = _MARKER_LINE.match(line)
            if match and job.key.authenticates(job.digest, match.group(1), match.group(3), match.group(2)):
                authentic.append((match.group(1), match.group(3)))
            else:
                ignored += 1
        return cls(tuple(authentic), ignored)

    def last(self, *kinds: str) -> tuple[str, str] | None:
        found = [marker for marker in self.authentic if not kinds or marker[0] in kinds]
        return found[-1] if found else None


def ignored_note(ignored: int) -> str:
    """What to say of marker lines that failed authentication (their content is never repeated)."""
    if not ignored:
        return ""
    return (
        f"{ignored} line(s) in the Ray job's log looked like a function marker but did not authenticate with this "
        "try's key, so they were ignored and never decoded: they were not printed by this run's function package "
        "(e.g. the function printed untrusted data imitating a result)"
    )


def read_outcome(log_text: str, job: VerifiedJob, result_format: str = "pickle") -> FunctionOutcome:
    """The function's result (or the path it was written to) from the job's log, authenticated first;
    RemoteFunctionError for an exception it raised; FunctionResultMissing when nothing authentic is there."""
    scan = MarkerScan.of(log_text, job)
    found = scan.last()
    if found is None:
        note = ignored_note(scan.ignored)
        raise FunctionResultMissing(
            "the Ray job's log holds no authenticated result of the function (was the job "
            "stopped?)" + (f"; {note}" if note else "")
        )
    kind, encoded = found
    data = base64.b64decode(encoded)
    if kind == "error":
        raise remote_error(data)
    if kind == "path":
        return FunctionOutcome("path", data.decode(), scan.ignored)
    if kind == "json":
        return FunctionOutcome("result", json.loads(data), scan.ignored)
    if check_result_format(result_format) != "pickle":
        raise FunctionResultMissing(
            "the Ray job returned a pickled result but this task asks for result_format='json', "
            "so it was not unpickled; clear the task to run the function again"
        )
    import pickle

    return FunctionOutcome("result", pickle.loads(data), scan.ignored)


def read_error(log_text: str, job: VerifiedJob) -> tuple[RemoteFunctionError | None, int]:
    """The exception the function raised, if an authenticated error marker says so, and how many marker
    lines were ignored. Only error markers (JSON text) are decoded: a failure never unpickles."""
    scan = MarkerScan.of(log_text, job)
    found = scan.last("error")
    return (remote_error(base64.b64decode(found[1])) if found else None), scan.ignored


def remote_error(data: bytes) -> RemoteFunctionError:
    error = json.loads(data)
    if not isinstance(error, dict):
        return RemoteFunctionError("an exception", str(error), "")
    qualified = ".".join(str(part) for part in (error.get("module"), error.get("type")) if part and part != "builtins")
    return RemoteFunctionError(
        qualified or "an exception", str(error.get("message", "")), str(error.get("traceback", ""))
    )


# --- versions ------------------------------------------------------------------------------------


def python_of_image(image: str) -> tuple[int, int] | None:
    """Python of a Ray image from its tag (``rayproject/ray:2.52.0-py311`` -> (3, 11)); None: not in the tag."""
    match = _IMAGE_PYTHON.search(image.rsplit("/", 1)[-1])
    return (3, int(match.group(1))) if match else None


def head_image(cluster_spec: Mapping[str, Any] | None) -> str:
    containers = ((((cluster_spec or {}).get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
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
        errors.append(
            f"the Ray cluster runs Python {cluster_python[0]}.{cluster_python[1]} (from its image) but this worker "
            f"pickles the function with Python {here[0]}.{here[1]}: functions travel as bytecode, so use an "
            "image with the same Python (e.g. a -py3XX tag)"
        )
    if cluster_ray and _minor(cluster_ray) != _minor(ray.__version__):
        warnings.append(
            f"the Ray cluster runs Ray {cluster_ray} and this worker Ray {ray.__version__}: the function "
            "is pickled with this worker's ray.cloudpickle; keep them on the same minor version"
        )
    return errors, warnings


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_versions(
    cluster_python: tuple[int, int] | None, cluster_ray: str | None, warn: Callable[[str], None]
) -> None:
    errors, warnings = version_problems(cluster_python=cluster_python, cluster_ray=cluster_ray)
    for line in warnings:
        warn(line)
    if errors:
        raise VersionMismatch("; ".join(errors))
