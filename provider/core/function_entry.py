"""Runs a shipped Python function inside a Ray job; copied as ``__main__.py`` of the package the task
ships (``core.functions``). Standard library and Ray only: this runs on the Ray cluster, not where the
provider is installed.

It checks the Python version first (cloudpickle carries bytecode, which only the same Python minor
version reads), unpickles the function and its arguments, calls it, and prints one marker line: the
pickled result, the path it was written to, or the error with its traceback.
"""

import base64
import json
import os
import pickle
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def emit(meta, kind, data):
    # One line, flushed: the task reads it back from the job's log.
    sys.stdout.write("%s%s:%s\n" % (meta["marker"], kind, base64.b64encode(data).decode("ascii")))
    sys.stdout.flush()


def fail(meta, kind, message, trace=""):
    error = {"type": kind, "module": "", "message": message, "traceback": trace}
    emit(meta, "error", json.dumps(error).encode("utf-8"))
    sys.exit(1)


def write_result(path, data):
    if "://" in path:
        import fsspec  # only for remote paths (s3://, gs://...); the cluster's image must have it

        with fsspec.open(path, "wb") as stream:
            stream.write(data)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as stream:
        stream.write(data)


def main():
    with open(os.path.join(HERE, "meta.json")) as stream:
        meta = json.load(stream)
    wanted, running = tuple(meta["python"]), tuple(sys.version_info[:2])
    if wanted != running:
        fail(meta, "PythonVersionMismatch",
             "the function was pickled on Python %d.%d but the Ray cluster runs Python %d.%d: use an image with "
             "Python %d.%d (or run the task where Python matches the cluster)" % (wanted + running + wanted))
    try:
        with open(os.path.join(HERE, "payload.pkl"), "rb") as stream:
            function, args, kwargs = pickle.load(stream)
        result = function(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001 - every failure goes back to the task with its traceback
        details = {"type": type(error).__qualname__, "module": type(error).__module__, "message": str(error),
                   "traceback": traceback.format_exc()}
        emit(meta, "error", json.dumps(details).encode("utf-8"))
        sys.exit(1)
    import ray.cloudpickle

    data = ray.cloudpickle.dumps(result)
    if meta.get("result_path"):
        write_result(meta["result_path"], data)
        emit(meta, "path", meta["result_path"].encode("utf-8"))
    elif len(data) > meta["max_result_bytes"]:
        fail(meta, "ResultTooLarge",
             "the function's result is %d bytes pickled, more than max_result_bytes=%d: give result_path= to have "
             "it written there instead" % (len(data), meta["max_result_bytes"]))
    else:
        emit(meta, "result", data)


if __name__ == "__main__":
    main()
