"""What the RayJob, RayCluster and RayService operators share.

* **Spec keywords.** Every KubeRay spec field is a parameter of the operator's own ``__init__``: Airflow's
  ``partial()``, ``expand()`` and ``expand_kwargs()`` accept only names found in an ``__init__``
  signature, so a keyword swallowed by ``**kwargs`` cannot be mapped. ``given_spec_keywords`` gathers
  the ones a task was given; the keyword tables of ``core`` stay the one list of names (a unit test
  fails when an operator's signature and its table disagree).
* **Only the manifest is a template file.** Airflow's ``template_ext`` turns *every* templated string
  ending in ``.yaml``/``.yml``/``.json`` into a file to load, however deeply nested: an
  ``entrypoint="python train.py --config conf/train.yaml"``, a ``runtime_env={"conda": "env.yml"}`` or a
  ``subPath: app.yaml`` would fail with TemplateNotFound. ``ManifestTemplatedOperator`` leaves
  ``template_ext`` empty, so every string renders as itself, and reads the one manifest field
  (``rayjob``, ``raycluster``, ``rayservice``) from its file when it names one.
* **Errors.** ``as_airflow_errors`` makes the provider's errors Airflow's.
* **Task state.** The RayJob a task made, recorded for its later tries (Airflow >= 3.3).
* **Tries.** Where a try stands in the task's series of tries: the first of the series (a cleared task
  starts a new one) and whether it is the last; what a RayJob task leaves behind when its try ends: the
  RayJob marked consumed once its outcome is reported, its work removed when a timeout ends the last try.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeGuard

import jinja2
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

# PERMANENT_ERRORS: core's one list, re-exported (kuberay_provider.airflow.operators.PERMANENT_ERRORS).
from kuberay_provider.core.errors import PERMANENT_ERRORS as PERMANENT_ERRORS
from kuberay_provider.core.errors import ConfigurationError, KubeRayProviderError, is_permanent
from kuberay_provider.core.job_request import RayJobRequest, RunIdentity
from kuberay_provider.core.job_runner import RayJobRunner
from kuberay_provider.core.lifecycle import RayJobLifecycle

MANIFEST_EXTENSIONS = (".yaml", ".yml", ".json")
TASK_STATE_KEY = "kuberay_rayjob"  # in the task's durable state: {"namespace", "name"[, "instance"]} of its RayJob


def given_spec_keywords(keywords: Collection[str], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The spec keywords among an operator's ``__init__`` arguments (its ``locals()``) that were given,
    in signature order. None means not given: it never overrides a base manifest's field."""
    return {name: value for name, value in arguments.items() if name in keywords and value is not None}


def names_a_manifest_file(value: Any) -> TypeGuard[str]:
    """A one-line string ending in a manifest extension: a path, as Airflow's template_ext would read it."""
    return isinstance(value, str) and "\n" not in value and value.endswith(MANIFEST_EXTENSIONS)


def read_manifest_template(jinja_env: jinja2.Environment, path: str, field: str) -> str:
    """The text of a manifest template file, found as Airflow finds template files (the DAG's folder,
    then ``template_searchpath``); rendered afterwards like any other templated string."""
    loader = jinja_env.loader
    try:
        if loader is None:
            raise jinja2.TemplateNotFound(path)
        return loader.get_source(jinja_env, path)[0]
    except jinja2.TemplateNotFound:
        searched = ", ".join(str(p) for p in getattr(loader, "searchpath", ())) or "no folder: the task has no DAG"
        raise jinja2.TemplateNotFound(
            path,
            f"{field}={path!r} names a template file that is not in the template search path ({searched}): give the "
            f"path relative to the DAG's folder or to a folder of the DAG's template_searchpath, or pass the "
            f"manifest itself (a dict or YAML text)",
        ) from None


class ManifestTemplatedOperator(BaseOperator):
    """An operator whose manifest field (``manifest_field``) may name a YAML/JSON file, read and rendered
    as a Jinja template; its other templated fields render every string as a string."""

    template_ext: Sequence[str] = ()  # see the module's docstring: no nested string is a file
    manifest_field: str = ""

    def resolve_template_files(self) -> None:
        """At DAG parse, as Airflow does for template_ext: the manifest file's text replaces its path."""
        path = getattr(self, self.manifest_field, None)
        if names_a_manifest_file(path):
            try:
                setattr(
                    self,
                    self.manifest_field,
                    read_manifest_template(self.get_template_env(), path, self.manifest_field),
                )
            except jinja2.TemplateNotFound as missing:  # parsing goes on; rendering the task fails with this
                self.log.warning("%s", missing.message)
        super().resolve_template_files()

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        # Hooked here, as KubernetesPodOperator does: a mapped task's operator is rendered through this
        # method alone (MappedOperator.render_template_fields), never through render_template_fields.
        # A path that came from an XCom (its id in seen_oids) is left alone, as Airflow leaves XComs.
        path = getattr(self, self.manifest_field, None) if parent is self else None
        if names_a_manifest_file(path) and id(path) not in seen_oids:
            setattr(self, self.manifest_field, read_manifest_template(jinja_env, path, self.manifest_field))
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)


class as_airflow_errors:
    """Provider errors become Airflow's: permanent ones (``core.errors.is_permanent``: an invalid manifest or
    argument, a name taken, no such cluster) fail without retries; a failed Ray job fails the try (retries
    apply), as does any other exception."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> Literal[False]:
        if error is None or isinstance(error, AirflowException) or not isinstance(error, Exception):
            return False
        if is_permanent(error):
            raise AirflowFailException(str(error)) from error
        if isinstance(error, KubeRayProviderError):
            raise AirflowException(str(error)) from error
        return False


def first_try_number(context: Context, retries: int | None) -> int | None:
    """The first try of the task's current series of tries; None when the task instance does not say.

    Airflow gives a task ``max_tries = retries`` and, each time it is cleared (or its run reprocessed by a
    backfill), ``max_tries = try_number + retries``; a retry leaves it alone. So the series began at
    ``max_tries - retries + 1``, the sum the Task SDK itself uses for the first reschedule date.
    """
    ti = context["ti"]
    max_tries, try_number = getattr(ti, "max_tries", None), getattr(ti, "try_number", None)
    if not isinstance(max_tries, int) or not isinstance(try_number, int):
        return None
    return max(1, min(try_number, max_tries - (retries or 0) + 1))


def is_final_try(context: Context, retries: int | None) -> bool:
    """No retry follows this try if it fails (Airflow's own rule: ``retries and try_number <= max_tries``).
    False when the task instance does not say: then nothing is treated as the last try."""
    ti = context["ti"]
    max_tries, try_number = getattr(ti, "max_tries", None), getattr(ti, "try_number", None)
    if not isinstance(max_tries, int) or not isinstance(try_number, int):
        return False
    return not (retries and try_number <= max_tries)


def run_identity(context: Context, instance: str = "") -> RunIdentity:
    """The task's run identity; ``instance``: the connection's instance id (``connection_instance``)."""
    ti = context["ti"]
    return RunIdentity(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1), instance)


def connection_instance(hook: Any) -> str:
    """The ``instance_id`` of the hook's connection ("" when not set); an invalid one fails the task at once.
    A stand-in for KubeRayHook without the property (a test's fake) counts as having none."""
    try:
        return str(getattr(hook, "instance_id", "") or "")
    except ConfigurationError as invalid:  # a retry reads the same connection
        raise AirflowFailException(str(invalid)) from invalid


def with_instance(request: RayJobRequest, instance: str) -> RayJobRequest:
    """The request as this deployment's: its RayJob name and run labels carry the instance id."""
    if not instance or request.identity.instance == instance:
        return request
    return dataclasses.replace(request, identity=dataclasses.replace(request.identity, instance=instance))


def follow_recorded_rayjob(context: Context, request: RayJobRequest, log: Any) -> RayJobRequest:
    """Airflow >= 3.3 keeps a task's own state across its tries (``task_state_store``). When an earlier
    try recorded its RayJob under another name than this try renders (a ``name=`` templated per try, a
    naming scheme changed by an upgrade), this try follows that RayJob: re-attaching to it, or replacing
    it if it failed, exactly as under the derived name."""
    store = context.get("task_state_store")
    if store is None or not request.mode.creates_rayjob:
        return request
    try:
        remembered = store.get(TASK_STATE_KEY)
    except Exception as exc:
        log.warning("Could not read this task's recorded RayJob: %s", exc)
        return request
    if not isinstance(remembered, dict) or not remembered.get("name"):
        return request
    namespace, name = str(remembered.get("namespace") or request.resolved_namespace), str(remembered["name"])
    if (namespace, name) == (request.resolved_namespace, request.rayjob_name):
        return request
    log.info(
        "An earlier try of this task recorded RayJob %s/%s; following it instead of %s",
        namespace,
        name,
        request.rayjob_name,
    )
    # With the instance id it was made under (none when recorded without one), or its run key would not match.
    identity = dataclasses.replace(request.identity, instance=str(remembered.get("instance") or ""))
    return dataclasses.replace(request, namespace=namespace, name=name, identity=identity)


def record_rayjob(context: Context, request: RayJobRequest, log: Any) -> None:
    """Record the RayJob in the task's durable state (Airflow >= 3.3), for the tries after this one."""
    store = context.get("task_state_store")
    if store is None:
        return
    try:
        instance = {"instance": request.identity.instance} if request.identity.instance else {}
        store.set(TASK_STATE_KEY, {"namespace": request.resolved_namespace, "name": request.rayjob_name, **instance})
    except Exception as exc:
        log.warning("Could not record RayJob %s in the task state: %s", request.rayjob_name, exc)


def mark_consumed(lifecycle: RayJobLifecycle, context: Context, request: RayJobRequest, log: Any) -> None:
    """Mark the RayJob consumed by this try: the last step before the outcome goes to Airflow. A try killed
    after it is retried in the same series and still re-attaches; a later series (the task cleared) runs
    the job anew (``core.lifecycle.reuse_of``)."""
    try_number, where = (
        getattr(context["ti"], "try_number", None),
        f"{request.resolved_namespace}/{request.rayjob_name}",
    )
    if not isinstance(try_number, int):
        return
    try:
        if lifecycle.mark_consumed(request.resolved_namespace, request.rayjob_name, try_number):
            log.info("Marked RayJob %s as consumed by try %d: clearing the task runs the job anew", where, try_number)
    except Exception as exc:
        log.warning(
            "Could not mark RayJob %s as consumed (%s): clearing this task would re-attach to it instead of "
            "running the job anew; delete the RayJob before clearing the task",
            where,
            exc,
        )


def withdraw_work(lifecycle: RayJobLifecycle, request: RayJobRequest) -> None:
    """Delete the RayJob (KubeRay stops its job and cluster), or stop the Ray job submitted straight to a head."""
    if request.mode.creates_rayjob:
        lifecycle.delete(request.resolved_namespace, request.rayjob_name)
        return
    service, cluster, _ = RayJobRunner(lifecycle).direct_target(request)
    lifecycle.jobs_client(request.resolved_namespace, service, cluster).stop(request.submission_id)


def after_timeout(
    context: Context,
    request: RayJobRequest,
    which: str,
    *,
    retries: int | None,
    delete_on_final_timeout: bool,
    lifecycle: Callable[[], RayJobLifecycle],
    log: Any,
) -> None:
    """``which`` timeout (wait_timeout, execution_timeout) ended the try's wait. A timeout is not a kill:
    before the last try the work keeps running for the retry to re-attach to; on the last try it is
    removed, unless ``delete_on_final_timeout`` is off, so nothing runs on with no task following it."""
    what = (
        f"Ray job {request.submission_id}"
        if not request.mode.creates_rayjob
        else f"RayJob {request.resolved_namespace}/{request.rayjob_name}"
    )
    if not is_final_try(context, retries):
        log.info("%s ended this try's wait; %s keeps running and the next try re-attaches to it", which, what)
    elif not delete_on_final_timeout:
        log.info(
            "%s ended the last try's wait; %s is kept (delete_on_final_timeout=False) though no task follows it any "
            "more: delete it yourself, or clear the task to wait for it again",
            which,
            what,
        )
    else:
        log.info(
            "%s ended the last try's wait and no retry follows: %s %s (keep it with delete_on_final_timeout=False)",
            which,
            "deleting" if request.mode.creates_rayjob else "stopping",
            what,
        )
        try:
            withdraw_work(lifecycle(), request)
        except Exception as exc:
            log.warning("Could not remove %s after the timeout: %s", what, exc)
