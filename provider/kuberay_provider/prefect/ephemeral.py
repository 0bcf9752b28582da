"""A first run with no Prefect server: give the temporary one Prefect starts the time it needs.

Without ``PREFECT_API_URL`` Prefect starts a temporary ("ephemeral") API server in a subprocess and waits
``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` for it, 20 s by default. On a fresh machine that
server first creates and migrates its database and imports every installed Prefect collection
(prefect-kubernetes among them), which on a small machine (2 cores) takes longer: ``run_rayjob(job)`` from
plain Python then failed with "Timed out while attempting to connect to ephemeral Prefect API server".
Importing ``kuberay_provider.prefect`` raises that wait to 120 s, unless an API URL or the timeout was
configured (environment, profile or ``.env``): a configured value is always kept.
"""

from __future__ import annotations

import os

import prefect.context
from prefect.settings import get_current_settings

TIMEOUT_VARIABLE = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
FIRST_RUN_STARTUP_TIMEOUT = 120


def allow_slow_ephemeral_startup() -> bool:
    """Raise the temporary server's startup timeout to ``FIRST_RUN_STARTUP_TIMEOUT`` unless the user
    configured a server or the timeout. True when it did."""
    settings = get_current_settings()
    ephemeral = settings.server.ephemeral
    if settings.api.url or TIMEOUT_VARIABLE in os.environ or "startup_timeout_seconds" in ephemeral.model_fields_set:
        return False
    if ephemeral.startup_timeout_seconds >= FIRST_RUN_STARTUP_TIMEOUT:
        return False
    os.environ[TIMEOUT_VARIABLE] = str(FIRST_RUN_STARTUP_TIMEOUT)
    # Prefect's settings were read when it was imported; re-read them as Prefect does after its plugins'
    # startup hooks set variables (a context the caller entered keeps its own settings).
    refresh = getattr(prefect.context, "refresh_global_settings_context", None)
    if refresh is not None:
        refresh()
    else:  # Prefect releases before the refresh function existed
        prefect.context.GLOBAL_SETTINGS_CONTEXT = prefect.context.root_settings_context()
    return True
