"""The provider's Airflow plugin: one page, served by the API server, that the "Ray Dashboard" link opens
when the task's connection has no browser URL for the dashboard (``links.py``).

Airflow's UI only shows a link to http(s) or its own origin (no ``data:`` URL, no text), so the
explanation has to be a page of the API server's. It is a bare ASGI callable rather than a FastAPI app:
plugins are loaded by every Airflow process, and this one should cost them nothing.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from airflow.sdk.plugins_manager import AirflowPlugin  # what official providers use: core and the SDK both accept it

from kuberay_provider.core.dashboard_links import EXAMPLE_TEMPLATE, PLACEHOLDERS, DashboardTarget

URL_PREFIX = "/kuberay-provider"
LOCAL_PORT = 8265

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def help_page(query: dict[str, str]) -> str:
    """The page for the link's query (conn_id and the target's fields); every value is escaped."""

    def esc(value: str) -> str:
        return html.escape(value, quote=True)

    conn_id = query.get("conn_id") or "kuberay_default"
    target = DashboardTarget(
        **{key: query.get(key, "") for key in ("namespace", "cluster", "rayjob", "job_id", "page")}
    )
    what = f"Ray job <code>{esc(target.job_id)}</code>" if target.job_id else "this Ray cluster"
    placeholders = ", ".join(f"<code>{{{name}}}</code>" for name in PLACEHOLDERS)
    service = f"{target.cluster}-head-svc" if target.cluster else (f"{target.rayjob}-head-svc" if target.rayjob else "")
    local_url = f"http://127.0.0.1:{LOCAL_PORT}/" + (f"#{target.route}" if target.route else "")
    meanwhile = (
        (
            f"<h2>Meanwhile, with kubectl</h2><pre>kubectl -n {esc(target.namespace or 'default')} port-forward "
            f"service/{esc(service)} {LOCAL_PORT}:{LOCAL_PORT}</pre>"
            f'<p>then open <a href="{esc(local_url)}">{esc(local_url)}</a> (KubeRay names a cluster\'s head Service '
            "<code>&lt;cluster&gt;-head-svc</code>; a RayJob's own cluster is gone once KubeRay deleted it).</p>"
        )
        if service
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Ray Dashboard link: no browser URL configured</title>
<style>body{{font-family:sans-serif;max-width:46em;margin:2em auto;line-height:1.5;padding:0 1em}}
code,pre{{background:#f3f4f6;padding:.1em .3em}}pre{{padding:.6em;white-space:pre-wrap;word-break:break-all}}</style></head>
<body><h1>No browser URL for the Ray dashboard</h1>
<p>The Airflow connection <code>{esc(conn_id)}</code> says how the workers reach the Ray dashboard of {what}
(through the Kubernetes API server's service proxy, with the connection's credentials, or the worker-facing
URL template), but not where a browser can open it, so the task's <b>Ray Dashboard</b> link leads here.</p>
<h2>Set a browser URL</h2>
<p>Edit the connection (<a href="../connections">Admin &rarr; Connections</a>, <code>{esc(conn_id)}</code>) and
set <b>Ray dashboard URL for browsers</b> (the extra field <code>dashboard_browser_url</code>) to where your
deployment exposes Ray dashboards (an Ingress, a reverse proxy, KubeRay's <code>enableIngress</code>), e.g.
<code>{esc(EXAMPLE_TEMPLATE)}</code>. It may use {placeholders}; the link opens the job's page once the job id
is known. Tasks that run after the change get the link.</p>
{meanwhile}
</body></html>
"""


class DashboardLinkHelp:
    """The ASGI app behind ``URL_PREFIX``: GET (any path below it) returns ``help_page``."""

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # only when served on its own: a mounted app gets no lifespan
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", "text/plain")
            return
        query = {key: values[-1] for key, values in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        body = help_page(query).encode()
        await _respond(send, 200, b"" if scope["method"] == "HEAD" else body, "text/html; charset=utf-8")


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        # The page echoes its query (escaped): no script may run on it, whatever a link carries.
        (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"),
        (b"x-content-type-options", b"nosniff"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class KubeRayPlugin(AirflowPlugin):
    """Registered through the provider's ``plugins`` entry (``get_provider_info``)."""

    name = "kuberay_provider"
    fastapi_apps = [  # noqa: RUF012 - AirflowPlugin declares it a plain class-level list
        {"app": DashboardLinkHelp(), "url_prefix": URL_PREFIX, "name": "KubeRay dashboard link help"}
    ]
