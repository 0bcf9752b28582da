"""The local control plane: the API server, the CRDs, and (when available) the local KubeRay controller.

In-process (tests, notebooks)::

    with LocalControlPlane(crds_dir=Path("../shared/kuberay/crds"), controller=False) as plane:
        api = kubernetes.client.CustomObjectsApi(plane.api_client())

runs everything on a background thread with its own event loop. ``async with`` works the same way.
``LocalControlPlane(...).run()`` serves in the foreground until SIGINT / SIGTERM (``kuberay-provider local up``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .apiserver import ApiServer, ApiServerSettings, Cluster, install_crds
from .apiserver.faults import CONTROLLER_USER_AGENT, FaultPlan
from .apiserver.rbac import MIN_TOKEN_SECONDS
from .crds_source import read_crds
from .kubeconfig import PlaneState, new_token, write_kubeconfig, write_private_file
from .tls import TlsFiles, generate_tls_files

if TYPE_CHECKING:
    from .controller.reconciler import ControllerSettings

log = logging.getLogger(__name__)
FAULTS_ENV = "KUBERAY_LOCAL_FAULTS"  # a fault plan (apiserver/faults.py); unset: no faults
T = TypeVar("T")
STARTUP_TIMEOUT_SECONDS = 60.0
CONTROLLER_STOP_TIMEOUT_SECONDS = 10.0


def _load_default_backend() -> Any:
    """The real Ray backend: ``kuberay_provider.local.ray_backend.create_backend()`` or ``LocalRayBackend()``."""
    module = importlib.import_module("kuberay_provider.local.ray_backend")
    factory = getattr(module, "create_backend", None) or getattr(module, "LocalRayBackend", None)
    if not callable(factory):
        raise ImportError("kuberay_provider.local.ray_backend offers neither create_backend() nor LocalRayBackend")
    return factory()


class LocalControlPlane:
    """A Kubernetes API server stand-in (+ the local KubeRay controller) on 127.0.0.1.

    ``home``: where the kubeconfig, token, TLS files live (default: a temporary directory removed on stop).
    ``tls``: serve HTTPS with a generated CA (default; kubectl sends tokens only over TLS).
    ``controller``: start kuberay_provider.local.controller.run_controller if it exists.
    ``controller_settings``: the controller's ``ControllerSettings`` (timing knobs such as the RayJob
    requeue); default: the controller's own defaults. Tests use it to poll a fast fake backend sooner.
    ``submitter_start_delay``: seconds between a K8sJobMode / SidecarMode RayJob going Running and its
    submitter submitting the Ray job (default 3 s, as a real submitter Pod takes a few seconds; until
    then the Jobs API answers 404 for the job id, as Ray does). Overrides ``controller_settings``.
    ``batch_schedulers``: with the controller, stand-ins for the batch schedulers in front of KubeRay:
    Kueue's queue kinds admitting queued RayJobs / RayClusters (``local.kueue``), and Volcano Jobs whose
    ray plugin exposes a head Service without any RayCluster (``local.volcano``).
    ``min_token_seconds``: the shortest ServiceAccount token TokenRequest issues (default 600, as
    kube-apiserver); lower it to test credentials that expire mid-wait (``kubeconfig.write_exec_kubeconfig``).
    """

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        crds_dir: Path | str | None = None,
        kubeconfig_path: Path | str | None = None,
        home: Path | str | None = None,
        tls: bool = True,
        controller: bool = True,
        backend: Any = None,
        token: str | None = None,
        history_limit: int = 10_000,
        bookmark_interval: float = 10.0,
        state_path: Path | str | None = None,
        faults: FaultPlan | str | None = None,
        controller_settings: ControllerSettings | None = None,
        submitter_start_delay: float | None = None,
        batch_schedulers: bool = True,
        min_token_seconds: int = MIN_TOKEN_SECONDS,
    ) -> None:
        self._temporary_home = home is None
        self.home = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="kuberay-local-"))
        self.kubeconfig_path = Path(kubeconfig_path) if kubeconfig_path else self.home / "kubeconfig"
        self.token_path = self.home / "token"
        self.state_path = Path(state_path) if state_path else None
        self.token = token or new_token()
        self.crds_dir = Path(crds_dir) if crds_dir else None
        self._host, self._port, self._tls = host, port, tls
        self._history_limit, self._bookmark_interval = history_limit, bookmark_interval
        self._controller_wanted, self._backend = controller, backend
        if submitter_start_delay is not None:
            from .controller.reconciler import ControllerSettings

            controller_settings = dataclasses.replace(
                controller_settings or ControllerSettings(), submitter_start_delay_seconds=submitter_start_delay
            )
        self._controller_settings = controller_settings
        self._batch_schedulers = batch_schedulers
        self._min_token_seconds = min_token_seconds
        # Fault injection (development and tests only): a plan, its text, or $KUBERAY_LOCAL_FAULTS.
        faults = faults if faults is not None else os.environ.get(FAULTS_ENV) or None
        self.faults = FaultPlan.parse(faults) if isinstance(faults, str) else faults
        self.tls_files: TlsFiles | None = None
        self._owned_backend: Any = None
        self.server: ApiServer | None = None
        self.controller_running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # --- what clients need ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("the local control plane is not started")
        return self.server.url

    @property
    def ca_path(self) -> Path | None:
        return self.tls_files.ca_cert if self.tls_files else None

    @property
    def cluster(self) -> Cluster:
        """The server's in-memory state. Touch it only through run_in_loop() while the server runs."""
        if self.server is None:
            raise RuntimeError("the local control plane is not started")
        return self.server.cluster

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` (the official synchronous client) for this plane."""
        import kubernetes.client

        return kubernetes.client.ApiClient(self._configure(kubernetes.client.Configuration()))

    def async_api_client(self) -> Any:
        """A ``kubernetes_asyncio.client.ApiClient`` for this plane (use it on your own event loop)."""
        import kubernetes_asyncio.client

        return kubernetes_asyncio.client.ApiClient(self._configure(kubernetes_asyncio.client.Configuration()))

    def _configure(self, configuration: Any) -> Any:
        configuration.host = self.url
        # Recent clients read the "BearerToken" key, older ones "authorization".
        configuration.api_key = {"BearerToken": self.token, "authorization": self.token}
        configuration.api_key_prefix = {"BearerToken": "Bearer", "authorization": "Bearer"}
        if self.ca_path:
            configuration.ssl_ca_cert = str(self.ca_path)
        return configuration

    # --- serving --------------------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Serve on the running loop until ``stop`` is set."""
        self._loop, self._stop = asyncio.get_running_loop(), stop
        if self._tls:
            self.tls_files = generate_tls_files(self.home / "tls")
        settings = ApiServerSettings(
            token=self.token,
            host=self._host,
            port=self._port,
            history_limit=self._history_limit,
            bookmark_interval=self._bookmark_interval,
            ssl_context=self.tls_files.server_context() if self.tls_files else None,
            faults=self.faults,
            min_token_seconds=self._min_token_seconds,
        )
        self.server = ApiServer(settings)
        if self.crds_dir:
            installed = install_crds(self.server.cluster, read_crds(self.crds_dir))
            log.info("installed CRDs: %s", ", ".join(installed) or "none")
        if self._batch_schedulers and self._controller_wanted:
            from .kueue import kueue_crds
            from .volcano import volcano_crds

            install_crds(self.server.cluster, kueue_crds() + volcano_crds())
        await self.server.start()
        controller_stop = asyncio.Event()
        controller_task = None
        try:
            write_private_file(self.token_path, self.token + "\n")
            write_kubeconfig(
                self.kubeconfig_path, self.url, self.token, self.tls_files.ca_pem if self.tls_files else None
            )
            controller_task = self._start_controller(controller_stop)
            if on_ready:
                on_ready()
            await stop.wait()
        finally:
            if controller_task is not None:
                await self._stop_controller(controller_task, controller_stop)
            if self._owned_backend is not None:
                await self._owned_backend.close()
                self._owned_backend = None
            await self.server.stop()

    def _start_controller(self, controller_stop: asyncio.Event) -> asyncio.Task[Any] | None:
        if not self._controller_wanted:
            return None
        try:
            from kuberay_provider.local.controller import run_controller

            backend = self._backend if self._backend is not None else _load_default_backend()
        except ImportError as missing:
            log.warning("local controller not started (%s): serving the API only", missing)
            return None
        self.controller_running = True
        # A Ray the plane started is the plane's to stop; one handed in belongs to the caller.
        self._owned_backend = backend if self._backend is None else None
        return asyncio.ensure_future(self._run_controller(run_controller, backend, controller_stop))

    async def _run_controller(
        self, run_controller: Callable[..., Any], backend: Any, controller_stop: asyncio.Event
    ) -> None:
        async with self.async_api_client() as api_client:
            api_client.user_agent = CONTROLLER_USER_AGENT  # the embedded KubeRay is spared injected faults
            try:
                if self._batch_schedulers:
                    await asyncio.gather(
                        run_controller(api_client, backend, controller_stop, settings=self._controller_settings),
                        self._run_batch_schedulers(api_client, backend, controller_stop),
                    )
                else:
                    await run_controller(api_client, backend, controller_stop, settings=self._controller_settings)
            except Exception:
                log.exception("the local controller stopped with an error")
                raise
            finally:
                self.controller_running = False

    @staticmethod
    async def _run_batch_schedulers(api_client: Any, backend: Any, stop: asyncio.Event) -> None:
        from .controller import HttpClusterAPI
        from .kueue import run_kueue
        from .volcano import run_volcano

        api = HttpClusterAPI(api_client)
        await asyncio.gather(run_kueue(api, stop), run_volcano(api, backend, stop))

    async def _stop_controller(self, task: asyncio.Task[Any], controller_stop: asyncio.Event) -> None:
        controller_stop.set()
        try:
            await asyncio.wait_for(task, CONTROLLER_STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            log.warning("the local controller did not stop within %ss: cancelled", CONTROLLER_STOP_TIMEOUT_SECONDS)
        except Exception:
            pass

    def run(self, on_ready: Callable[[LocalControlPlane], None] | None = None) -> None:
        """Serve in the foreground until SIGINT or SIGTERM; the state file (if any) tells other commands."""

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await self.serve(stop, lambda: self._announce_ready(on_ready))

        try:
            asyncio.run(main())
        finally:
            self._forget_state()
            self._cleanup_home()

    def _announce_ready(self, on_ready: Callable[[LocalControlPlane], None] | None) -> None:
        if self.state_path:
            PlaneState(
                pid=os.getpid(),
                url=self.url,
                kubeconfig=str(self.kubeconfig_path),
                token_path=str(self.token_path),
                ca_path=str(self.ca_path or ""),
            ).save(self.state_path)
        if on_ready:
            on_ready(self)

    def _forget_state(self) -> None:
        if self.state_path and self.state_path.exists():
            state = PlaneState.load(self.state_path)
            if state is None or state.pid == os.getpid():
                self.state_path.unlink(missing_ok=True)

    # --- in a background thread -----------------------------------------------------------------------

    def start(self) -> LocalControlPlane:
        """Start serving on a background thread; returns once requests are answered."""
        if self._thread is not None:
            raise RuntimeError("the local control plane is already started")
        self._thread = threading.Thread(target=self._thread_main, name="kuberay-local-plane", daemon=True)
        self._thread.start()
        if not self._ready.wait(STARTUP_TIMEOUT_SECONDS):
            raise TimeoutError("the local control plane did not start in time")
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("the local control plane failed to start") from self._startup_error
        return self

    def _thread_main(self) -> None:
        async def main() -> None:
            await self.serve(asyncio.Event(), self._ready.set)

        try:
            asyncio.run(main())
        except BaseException as error:
            self._startup_error = error
            log.exception("the local control plane stopped with an error")
        finally:
            self._ready.set()

    def stop(self) -> None:
        if self._thread is not None and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=30)
        self._thread = None
        self._cleanup_home()

    def _cleanup_home(self) -> None:
        if self._temporary_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def run_in_loop(self, function: Callable[[], T]) -> T:
        """Call ``function`` on the server's event loop (where the Cluster lives) and return its result."""
        if self._loop is None:
            raise RuntimeError("the local control plane is not started")
        result: Future[T] = Future()

        def call() -> None:
            try:
                result.set_result(function())
            except BaseException as error:
                result.set_exception(error)

        self._loop.call_soon_threadsafe(call)
        return result.result(timeout=30)

    def compact_history(self) -> None:
        """Forget the watch history, as etcd compaction does (watches from older versions then get 410)."""
        self.run_in_loop(lambda: self.cluster.store.compact())

    def __enter__(self) -> LocalControlPlane:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> LocalControlPlane:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)
