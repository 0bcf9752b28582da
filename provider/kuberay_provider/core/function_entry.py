"""Runs a shipped Python function inside a Ray job; copied as ``__main__.py`` of the package the task
ships (``core.functions``). Standard library and Ray only: this runs on the Ray cluster, not where the
provider is installed.

It reads the try's key (the package's ``key`` file), checks the Python version (cloudpickle carries
bytecode, which only the same Python minor version reads), unpickles the function and its arguments,
calls it, and prints one marker line authenticated with the key: the result (pickled, or JSON), the path
it was written to, or the error with its traceback as text. The task believes no other marker line.
"""

from __future__ import annotations  # the cluster's Python may be older than the provider's

import base64
import hashlib
import hmac
import json
import os
import pickle
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

HERE = os.path.dirname(os.path.abspath(__file__))
DIGEST = os.path.basename(HERE).rsplit("_", 1)[-1]  # the package is kuberay_fn_<digest>
MAC_CONTEXT = b"kuberay-function-marker/v1"  # as core.function_keys.TryKey.mac


def read_key() -> bytes:
    try:
        with open(os.path.join(HERE, "key")) as stream:
            return bytes.fromhex(stream.read().strip())
    except (OSError, ValueError) as error:
        # Without the key no marker can be believed: say why in the job's log and fail the job.
        sys.stderr.write("the function package has no usable key (%s): re-run the task\n" % type(error).__name__)
        sys.exit(1)


def emit(meta: dict[str, Any], key: bytes, kind: str, data: bytes) -> None:
    # One line, flushed: the task reads it back from the job's log and checks its authenticator first.
    encoded = base64.b64encode(data).decode("ascii")
    message = b"\n".join((MAC_CONTEXT, DIGEST.encode(), kind.encode(), encoded.encode("ascii")))
    mac = hmac.new(key, message, hashlib.sha256).hexdigest()
    sys.stdout.write("%s%s:%s:%s\n" % (meta["marker"], kind, mac, encoded))
    sys.stdout.flush()


def fail(meta: dict[str, Any], key: bytes, kind: str, message: str, trace: str = "") -> NoReturn:
    error = {"type": kind, "module": "", "message": message, "traceback": trace}
    emit(meta, key, "error", json.dumps(error).encode("utf-8"))
    sys.exit(1)


def write_result(path: str, data: bytes) -> None:
    if "://" in path:
        import fsspec  # only for remote paths (s3://, gs://...); the cluster's image must have it

        with fsspec.open(path, "wb") as stream:
            stream.write(data)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as stream:
        stream.write(data)


def encode(meta: dict[str, Any], key: bytes, result: object) -> tuple[str, bytes]:
    """(marker kind, bytes) of the result in the format the task asked for."""
    if meta.get("result_format") == "json":
        try:
            return "json", json.dumps(result).encode("utf-8")
        except (TypeError, ValueError) as error:
            fail(
                meta,
                key,
                "ResultNotJSON",
                "result_format='json' but the function's result is not JSON (%s): return dicts, lists, strings, numbers, "
                "booleans and None, or use result_format='pickle'" % error,
            )
    import ray.cloudpickle

    dumps: Callable[[object], bytes] = ray.cloudpickle.dumps  # ray.cloudpickle has no annotations
    return "result", dumps(result)


def main() -> None:
    key = read_key()
    with open(os.path.join(HERE, "meta.json")) as stream:
        meta: dict[str, Any] = json.load(stream)
    wanted, running = tuple(meta["python"]), tuple(sys.version_info[:2])
    if wanted != running:
        fail(
            meta,
            key,
            "PythonVersionMismatch",
            "the function was pickled on Python %d.%d but the Ray cluster runs Python %d.%d: use an image with "
            "Python %d.%d (or run the task where Python matches the cluster)" % (wanted + running + wanted),
        )
    try:
        with open(os.path.join(HERE, "payload.pkl"), "rb") as stream:
            function, args, kwargs = pickle.load(stream)
        result = function(*args, **kwargs)
    except BaseException as error:
        details = {
            "type": type(error).__qualname__,
            "module": type(error).__module__,
            "message": str(error),
            "traceback": traceback.format_exc(),
        }
        emit(meta, key, "error", json.dumps(details).encode("utf-8"))
        sys.exit(1)
    kind, data = encode(meta, key, result)
    if meta.get("result_path"):
        write_result(meta["result_path"], data)
        emit(meta, key, "path", meta["result_path"].encode("utf-8"))
    elif len(data) > meta["max_result_bytes"]:
        fail(
            meta,
            key,
            "ResultTooLarge",
            "the function's result is %d bytes encoded, more than max_result_bytes=%d: give result_path= to have "
            "it written there instead" % (len(data), meta["max_result_bytes"]),
        )
    else:
        emit(meta, key, kind, data)


if __name__ == "__main__":
    main()
