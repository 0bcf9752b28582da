"""Which run a shipped function's Ray job belongs to, and which of its marker lines the task may believe.

Each try of a function task has a key: HMAC-SHA256 of a secret the workers hold and the run's identity
and try number. The key travels to the cluster only inside the package the Ray Jobs SDK uploads
(``core.functions``); the job authenticates every marker line it prints with it, and the Ray job's
metadata carries the key's *identifier* (an HMAC of the key, which reveals nothing of it), the try
number and the package's digest. The task reads a result only from a job whose metadata shows this
run's key, and only from marker lines that authenticate with it (``docs/taskflow.md``, "Trust").

The key is derived, not random and remembered, because the process that reads a result is often not
the one that shipped the function: a deferred task resumes in a new process, possibly on another
machine, and a retried try re-attaches to the job of the try before it.

The secret: ``KUBERAY_FUNCTION_SECRET``, else the file ``KUBERAY_FUNCTION_SECRET_FILE`` names (a
mounted Kubernetes Secret, say), else one this machine generates once (fine on one machine; a retry
or a deferred task resumed on another machine then cannot verify, and says so).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kuberay_provider.core.errors import KubeRayProviderError, PermanentError
from kuberay_provider.core.job_request import RunIdentity

log = logging.getLogger(__name__)

SECRET_ENV = "KUBERAY_FUNCTION_SECRET"
SECRET_FILE_ENV = "KUBERAY_FUNCTION_SECRET_FILE"
MIN_SECRET_CHARS = 16
PACKAGE_PREFIX = "kuberay_fn_"
# Ray job metadata (and the RayJob's spec.metadata): public identifiers, never the key itself.
META_KEY_ID = "kuberay-function-key-id"
META_TRY = "kuberay-function-try"
META_PACKAGE = "kuberay-function-package"
MARKER_MAC_CONTEXT = b"kuberay-function-marker/v1"  # function_entry.py builds the same message
_KEY_CONTEXT = b"kuberay-function-key/v1"
_KEY_ID_CONTEXT = b"kuberay-function-key-id/v1"
_DIGEST = re.compile(r"^[0-9a-f]{32}$")
_announced: set[str] = set()


class FunctionSecretError(KubeRayProviderError):
    """The workers' secret for function results cannot be had."""


class ForeignRayJob(PermanentError):
    """The Ray job under this task's submission id is not this run's function job: its result is not read."""


def worker_secret() -> bytes:
    """The secret every worker of a deployment shares (see the module's docstring)."""
    value = os.environ.get(SECRET_ENV, "")
    if value:
        if len(value) < MIN_SECRET_CHARS:
            raise FunctionSecretError(
                f"{SECRET_ENV} is shorter than {MIN_SECRET_CHARS} characters: use a long random value, "
                "e.g. the output of: python -c 'import secrets; print(secrets.token_hex(32))'"
            )
        return value.encode("utf-8")
    named = os.environ.get(SECRET_FILE_ENV, "")
    if named:
        return _read_secret_file(Path(named))
    return _machine_secret(default_secret_path())


def default_secret_path() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "kuberay-provider" / "function-secret"


def _read_secret_file(path: Path) -> bytes:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:  # the reason only: the file's content never goes into a message
        raise FunctionSecretError(
            f"the function secret file {path} cannot be read ({exc.strerror or type(exc).__name__}); "
            f"fix {SECRET_FILE_ENV}, or set {SECRET_ENV}"
        ) from None
    if len(value) < MIN_SECRET_CHARS:
        raise FunctionSecretError(
            f"the function secret file {path} holds fewer than {MIN_SECRET_CHARS} characters: "
            "write a long random value into it"
        )
    return value.encode("utf-8")


def _machine_secret(path: Path) -> bytes:
    """This machine's secret, created once: written aside and linked into place, so two processes
    starting together agree on one value and nobody reads a half-written file."""
    if not path.exists():
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            staged = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                stream.write(secrets.token_hex(32) + "\n")
            try:
                os.link(staged, path)
            except FileExistsError:
                pass  # another process won: use its secret
            finally:
                staged.unlink(missing_ok=True)
        except OSError as exc:
            raise FunctionSecretError(
                f"no {SECRET_ENV} is set and this machine's function secret cannot be created at "
                f"{path} ({exc.strerror or type(exc).__name__}): set {SECRET_ENV} to the same long "
                "random value on every worker"
            ) from None
    if str(path) not in _announced:
        _announced.add(str(path))
        log.info(
            "Function results are authenticated with this machine's secret (%s). Set %s to one value on every "
            "worker when a retry or a deferred task may resume on another machine.",
            path,
            SECRET_ENV,
        )
    return _read_secret_file(path)


def _identity_text(identity: RunIdentity) -> bytes:
    # The instance id stays out: it already sets the job's name (so its submission id) apart, and the
    # Airflow decorator derives the key before the connection that holds the instance id is read.
    index = "" if identity.map_index is None or identity.map_index < 0 else str(identity.map_index)
    return "\x1f".join((identity.owner, identity.task, identity.run_id, index)).encode("utf-8")


@dataclass(frozen=True)
class TryKey:
    """The key of one try of one run. ``repr`` never shows it."""

    key: bytes = field(repr=False)
    try_number: int

    @classmethod
    def derive(cls, identity: RunIdentity, try_number: int | None, secret: bytes | None = None) -> TryKey:
        number = int(try_number or 0)
        message = b"\0".join((_KEY_CONTEXT, _identity_text(identity), str(number).encode()))
        return cls(
            hmac.new(secret if secret is not None else worker_secret(), message, hashlib.sha256).digest(), number
        )

    @property
    def key_id(self) -> str:
        """Names the key in public places (job metadata); an HMAC, so it tells nothing of the key."""
        return hmac.new(self.key, _KEY_ID_CONTEXT, hashlib.sha256).hexdigest()[:32]

    def mac(self, digest: str, kind: str, encoded: str) -> str:
        """The authenticator of a marker line: its kind and (still encoded) payload, for one package."""
        message = b"\n".join((MARKER_MAC_CONTEXT, digest.encode(), kind.encode(), encoded.encode("ascii")))
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def authenticates(self, digest: str, kind: str, encoded: str, mac: str) -> bool:
        return hmac.compare_digest(self.mac(digest, kind, encoded), mac)


def job_metadata(key: TryKey, digest: str) -> dict[str, str]:
    return {META_KEY_ID: key.key_id, META_TRY: str(key.try_number), META_PACKAGE: digest}


def package_entrypoint(digest: str) -> str:
    return f"python -m {PACKAGE_PREFIX}{digest}"


@dataclass(frozen=True)
class VerifiedJob:
    """A Ray job shown to be this run's: the key its markers must carry, and the package they name."""

    job_id: str
    key: TryKey
    digest: str


def verify_job(
    job_id: str,
    metadata: Mapping[str, str] | None,
    entrypoint: str,
    identity: RunIdentity,
    current_try: int | None,
    secret: bytes | None = None,
) -> VerifiedJob:
    """``job_id`` as this run's function job, from its metadata and entrypoint; ForeignRayJob otherwise."""
    found = dict(metadata or {})
    key_id, try_text, digest = (str(found.get(name) or "") for name in (META_KEY_ID, META_TRY, META_PACKAGE))

    def refuse(why: str) -> ForeignRayJob:
        return ForeignRayJob(
            f"Ray job {job_id} is not this run's function job: {why}. The task did not read its log or result. If another "
            "job took this task's submission id, stop and delete it (or delete the RayJob) and clear the task; if an earlier "
            f"try ran on another machine, give every worker the same {SECRET_ENV}"
        )

    if not (key_id and try_text and digest):
        raise refuse(
            f"its metadata lacks {META_KEY_ID} / {META_TRY} / {META_PACKAGE}, so no function task of this "
            "provider submitted it"
        )
    if not try_text.isdigit() or len(try_text) > 6:
        raise refuse(f"its metadata's {META_TRY} is not a try number")
    if current_try is not None and int(try_text) > current_try:
        raise refuse(f"its metadata names try {int(try_text)}, later than this try ({current_try})")
    key = TryKey.derive(identity, int(try_text), secret)
    if not hmac.compare_digest(key.key_id, key_id):
        raise refuse(f"its {META_KEY_ID} is not the one this run's secret gives for try {int(try_text)}")
    if not _DIGEST.match(digest) or entrypoint.strip() != package_entrypoint(digest):
        raise refuse(
            f"it does not run the package its metadata names (entrypoint {package_entrypoint('<digest>')!r} expected)"
        )
    return VerifiedJob(job_id, key, digest)
