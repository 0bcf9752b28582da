"""``kuberay-provider local up|down|status``: run the local control plane for development.

``add_local_commands(subparsers)`` registers the commands on the main CLI's sub-parsers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .crds_source import HOW_TO_GET_CRDS, CrdSourceError, prepare_crds
from .kubeconfig import PlaneState, default_kubeconfig_path, default_state_path, local_home
from .ray_backend.runtime_env import DEFAULT_PACKAGE_POLICY, PackagePolicy

READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 20.0
POLL_SECONDS = 0.2


def probe(state: PlaneState, timeout: float = 2.0) -> bool:
    """True when the plane in ``state`` answers ``/readyz`` with its token."""
    context = ssl.create_default_context(cafile=state.ca_path) if state.ca_path else None
    request = urllib.request.Request(f"{state.url}/readyz", headers={"Authorization": f"Bearer {state.token()}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return bool(response.status == 200)  # urlopen's response is untyped
    except (OSError, urllib.error.URLError):
        return False


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_plane_process(pid: int) -> bool:
    """Guard against a recycled pid: the process must be a kuberay-provider local plane."""
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return _process_alive(pid)  # no /proc (macOS): trust the state file
    return b"kuberay" in command_line and b"up" in command_line


def running_state() -> PlaneState | None:
    state = PlaneState.load(default_state_path())
    if state is None or not _process_alive(state.pid) or not _is_plane_process(state.pid):
        return None
    return state


def print_instructions(url: str, kubeconfig: Path | str) -> None:
    airflow_extra = {"kube_config_path": str(kubeconfig), "namespace": "default"}
    airflow_connection = json.dumps({"conn_type": "kubernetes", "extra": airflow_extra})
    print(
        f"""Local control plane (Kubernetes API + KubeRay stand-in) ready at {url}

  kubectl:  export KUBECONFIG={kubeconfig}
            kubectl get rayjobs,rayclusters,rayservices
  Airflow:  export AIRFLOW_CONN_KUBERNETES_DEFAULT='{airflow_connection}'
  Prefect:  KubernetesClusterConfig.from_file("{kubeconfig}")  (prefect-kubernetes), or export KUBECONFIG as above
  Stop:     kuberay-provider local down
""",
        flush=True,
    )


def _fault_plan(text: str) -> str:
    """Checked here so a bad plan is a usage error; the plane parses it again (a detached child gets the text)."""
    from .apiserver.faults import FaultPlan

    try:
        FaultPlan.parse(text)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def _plane_arguments(args: argparse.Namespace) -> list[str]:
    """The ``up`` arguments to hand to a detached child (everything but --detach)."""
    forwarded = ["--port", str(args.port), "--tls" if args.tls else "--no-tls"]
    if args.kubeconfig:
        forwarded += ["--kubeconfig", str(Path(args.kubeconfig).resolve())]
    if args.crds:
        forwarded += ["--crds", str(Path(args.crds).resolve())]
    if args.no_controller:
        forwarded.append("--no-controller")
    if args.dashboard_url:
        forwarded += ["--dashboard-url", args.dashboard_url]
    forwarded += ["--runtime-env-packages", args.runtime_env_packages]
    if args.faults:
        forwarded += ["--faults", args.faults]
    if args.submitter_start_delay is not None:
        forwarded += ["--submitter-start-delay", str(args.submitter_start_delay)]
    return forwarded


def _up_detached(args: argparse.Namespace) -> int:
    home = local_home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = home / "plane.log"
    command = [sys.executable, "-m", "kuberay_provider.local.cli", "local", "up", *_plane_arguments(args)]
    with log_path.open("ab") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if child.poll() is not None:
            print(
                f"error: the local control plane exited with code {child.returncode}; see {log_path}", file=sys.stderr
            )
            return 1
        state = PlaneState.load(default_state_path())
        if state is not None and state.pid == child.pid and probe(state):
            print_instructions(state.url, state.kubeconfig)
            print(f"Running in the background (pid {child.pid}, log {log_path}).")
            return 0
        time.sleep(POLL_SECONDS)
    print(
        f"error: the local control plane did not become ready in {READY_TIMEOUT_SECONDS:.0f}s; see {log_path}",
        file=sys.stderr,
    )
    child.terminate()
    return 1


def cmd_up(args: argparse.Namespace) -> int:
    running = running_state()
    if running is not None:
        print(
            f"error: a local control plane is already running at {running.url} (pid {running.pid}); "
            "stop it with: kuberay-provider local down",
            file=sys.stderr,
        )
        return 1
    if not _resolve_crds(args):
        return 2
    if args.detach:
        return _up_detached(args)
    from .plane import LocalControlPlane

    if not args.tls:
        print(
            "warning: without TLS kubectl will not send its token (client-go only does over HTTPS); "
            "the Python clients still work",
            file=sys.stderr,
        )
    backend = None if args.no_controller else _ray_backend(args)
    plane = LocalControlPlane(
        port=args.port,
        crds_dir=args.crds,
        kubeconfig_path=args.kubeconfig or default_kubeconfig_path(),
        home=local_home(),
        tls=args.tls,
        controller=not args.no_controller,
        faults=args.faults,
        submitter_start_delay=args.submitter_start_delay,
        backend=backend,
        state_path=default_state_path(),
    )
    try:
        plane.run(on_ready=lambda ready: print_instructions(ready.url, ready.kubeconfig_path))
    finally:
        if backend is not None:  # handed in, so ours to close: the Ray heads it started, its files
            asyncio.run(backend.close())
    return 0


def _ray_backend(args: argparse.Namespace) -> Any:
    """The controller's Ray: the one at --dashboard-url, else a head started (and stopped) with the plane."""
    from .ray_backend import LocalRayBackend

    return LocalRayBackend(
        dashboard_url=args.dashboard_url or None, package_policy=PackagePolicy(args.runtime_env_packages)
    )


def _resolve_crds(args: argparse.Namespace) -> bool:
    """Point ``args.crds`` at a folder of the CRDs the user named (a chart, a folder, a ``kubectl get -o yaml``).

    False, having said why and where to get them, when ``--crds`` holds no KubeRay CRD."""
    if not args.crds:
        print(
            "note: no --crds: RayJobs, RayClusters and RayServices are served once KubeRay's CRDs are installed "
            "(kubectl apply --server-side -f crds/), or pass --crds.\n" + HOW_TO_GET_CRDS,
            file=sys.stderr,
        )
        return True
    try:
        args.crds = prepare_crds(args.crds, local_home() / "crds")
    except CrdSourceError as exc:
        print(f"error: {exc}\n{HOW_TO_GET_CRDS}", file=sys.stderr)
        return False
    return True


def cmd_down(_: argparse.Namespace) -> int:
    state = running_state()
    if state is None:
        print("no local control plane is running")
        default_state_path().unlink(missing_ok=True)
        return 0
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while _process_alive(state.pid) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    if _process_alive(state.pid):
        print(
            f"error: the local control plane (pid {state.pid}) did not stop within {STOP_TIMEOUT_SECONDS:.0f}s",
            file=sys.stderr,
        )
        return 1
    default_state_path().unlink(missing_ok=True)
    print(f"stopped the local control plane at {state.url} (pid {state.pid})")
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    state = running_state()
    if state is None:
        print("no local control plane is running")
        return 1
    health = "ready" if probe(state) else "not answering"
    print(f"local control plane {health} at {state.url} (pid {state.pid})\n  export KUBECONFIG={state.kubeconfig}")
    return 0 if health == "ready" else 1


def add_local_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    local = subparsers.add_parser(
        "local", help="the local control plane: a Kubernetes API + KubeRay stand-in (development only)"
    )
    commands = local.add_subparsers(dest="local_command", required=True)

    up = commands.add_parser("up", help="start the local control plane (foreground until Ctrl-C, or --detach)")
    up.add_argument(
        "--kubeconfig", type=Path, help=f"where to write the kubeconfig (default {default_kubeconfig_path()})"
    )
    up.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    up.add_argument(
        "--crds",
        type=Path,
        metavar="PATH",
        help="install KubeRay's CRDs (and any other CustomResourceDefinition) from: a folder of CRD YAML files, "
        "the KubeRay operator Helm chart's folder (its crds/), or one file such as `kubectl get crd ... -o yaml` prints",
    )
    up.add_argument("--detach", action="store_true", help="run in the background; return once it serves")
    up.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve HTTPS with a generated CA (default; kubectl needs it to send the token)",
    )
    up.add_argument(
        "--no-controller", action="store_true", help="serve the API only, without the local KubeRay controller"
    )
    up.add_argument(
        "--dashboard-url",
        metavar="URL",
        help="run workloads on the Ray already running there (its dashboard, e.g. http://127.0.0.1:8265) "
        "instead of starting a Ray head with the plane",
    )
    up.add_argument(
        "--faults",
        metavar="PLAN",
        type=_fault_plan,
        help="inject API faults (testing only), e.g. rate=0.1,seed=7,kinds=500+503+429+reset+slow+drop-watch+gone; "
        "default: $KUBERAY_LOCAL_FAULTS, else none",
    )
    up.add_argument(
        "--runtime-env-packages",
        choices=[policy.value for policy in PackagePolicy],
        default=DEFAULT_PACKAGE_POLICY.value,
        help="what to do with a runtime env's pip/uv/conda lists: skip-satisfied (default) drops the "
        "requirements this environment already satisfies and lets Ray install the rest; install "
        "hands them to Ray unchanged; ignore drops them (offline). Each change is an Event on the RayJob",
    )
    up.add_argument(
        "--submitter-start-delay",
        metavar="SECONDS",
        type=float,
        default=None,
        help="seconds from a K8sJobMode RayJob going Running to its submitter submitting the Ray job "
        "(default 3, like a real submitter Pod; the Jobs API answers 404 for the job id until then)",
    )
    up.set_defaults(func=cmd_up)

    down = commands.add_parser("down", help="stop the local control plane started with up")
    down.set_defaults(func=cmd_down)
    status = commands.add_parser("status", help="report whether the local control plane runs, and where")
    status.set_defaults(func=cmd_status)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kuberay_provider.local.cli local up ...`` (what ``up --detach`` starts)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="kuberay-provider")
    add_local_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
