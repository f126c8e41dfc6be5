"""What the handlers share for the life of the process: API clients, the cloud client, the mutex."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import kopf
from kubernetes.aio import client, config

from lb_operator.api import ALL_KINDS, GROUP, VERSION
from lb_operator.cloud import Busy, CloudError
from lb_operator.cloud.backends import open_backend
from lb_operator.health import WatchHealth
from lb_operator.mutex import LeaseMutex
from lb_operator.reconcile.engine import Context
from lb_operator.reconcile.parents import ParentWatch
from lb_operator.reconcile.resources import Resource, ResourceAPI
from lb_operator.reconcile.snapshot import CloudSnapshot
from lb_operator.settings import OperatorSettings
from lb_operator.sharding.streams import Mirror

logger = logging.getLogger(__name__)


STARTUP_RETRY = 10.0
"""Seconds before start-up is tried again when the cloud's credentials service cannot be reached."""

PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")


def session_options(env: Mapping[str, str]) -> dict[str, Any]:
    """Options of the API client's aiohttp session: without a proxy in the environment, it does not
    look for one. With ``trust_env`` (the client's default) aiohttp looks up the proxy variables and
    reads ``~/.netrc`` in a thread on every request: about 4 % of a replica's samples in a profile of
    ``make bench-scale``, for nothing. With a proxy variable set, it is honoured as before."""
    return {} if any(env.get(name) for name in PROXY_VARIABLES) else {"trust_env": False}


async def kubernetes_client() -> client.ApiClient:
    """An async API client: in-cluster credentials in a pod, else the kubeconfig."""
    configuration = client.Configuration()
    configuration.client_session_kwargs = session_options(os.environ)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        await config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    return client.ApiClient(configuration)


async def until_our_kinds_are_served(api: client.ApiClient) -> None:
    """Wait until the API server's discovery lists all five kinds; retried every second, cancellable.

    Why: Kopf resolves the resources it serves once, at start. If the API
    server cannot say then (down, or answering 503 while it starts), Kopf
    logs "Unresolved resources cannot be served" and never serves them. So
    the operator does not let Kopf start before discovery works.
    """
    wanted = {kind.plural for kind in ALL_KINDS}
    waited = 0
    while True:
        try:
            params = await api.param_serialize(
                "GET",
                f"/apis/{GROUP}/{VERSION}",
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            response = await api.call_api(*params, _request_timeout=aiohttp.ClientTimeout(total=5))
            body: bytes = await response.read()  # type: ignore[no-untyped-call]
            if int(response.status) == 200:
                served = {item.get("name") for item in json.loads(body).get("resources", [])}
                if wanted <= served:
                    return
                problem = f"kinds not served yet: {sorted(wanted - served)} (are the CRDs applied?)"
            else:
                problem = f"discovery answered {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            problem = f"{type(error).__name__}: {error}"
        if waited % 10 == 0:
            logger.warning("waiting for the API server to serve %s/%s: %s", GROUP, VERSION, problem)
        waited += 1
        await asyncio.sleep(1)


async def open_context(events: Callable[[Resource, str, str, str], None]) -> Context:
    """Read the settings, open the clients; a misconfiguration stops the operator here, clearly."""
    settings = OperatorSettings.from_env()
    api = await kubernetes_client()
    await until_our_kinds_are_served(api)
    try:
        cloud = await open_backend(
            settings.backend,
            settings.cloud_url,
            settings.cloud_token_file,
            settings.cloud_request_timeout,
            settings.cloud_connections,
        )
    except Busy as error:  # Keystone (or its catalog) cannot be reached now: start-up is tried again
        await api.close()  # type: ignore[no-untyped-call]
        raise kopf.TemporaryError(f"{error}; start-up tries again", delay=STARTUP_RETRY) from None
    except (ValueError, CloudError) as error:  # a bad configuration, or credentials refused
        await api.close()  # type: ignore[no-untyped-call]
        raise kopf.PermanentError(str(error)) from None
    mutex: LeaseMutex | None = None
    if settings.locking:
        mutex = LeaseMutex(api, settings.namespace, settings.identity, settings.mutex_settings())
        mutex.start()
    else:
        logger.warning(
            "LOCKING IS OFF (LBOP_LOCKING=false): concurrent cloud changes will conflict; tests only"
        )
    logger.info(
        "lb-operator %s: cloud %r, locks in namespace %s", settings.identity, cloud, settings.namespace
    )
    health = WatchHealth()
    # One watch per kind for the whole process: the drift sweep, the parents' wake-ups and, when
    # sharding, the sharder and the drains all read it.
    mirror = Mirror(client.CustomObjectsApi(api), settings.watch_namespaces, list(ALL_KINDS), health)
    parents = ParentWatch(mirror)
    parents.start()
    mirror.start()
    return Context(
        cloud=cloud,
        mutex=mutex,
        settings=settings,
        resources=ResourceAPI(api),
        events=events,
        api=api,
        parents=parents,
        shard=settings.identity if settings.sharding and mutex is not None else None,
        health=health,
        mirror=mirror,
        snapshot=CloudSnapshot(cloud, settings.resync_interval),
    )


async def close_context(context: Context) -> None:
    await context.parents.stop()
    if context.mirror is not None:
        await context.mirror.stop()
    if context.mutex is not None:
        await context.mutex.close()
    close = getattr(context.cloud, "close", None)
    if close is not None:
        await close()
    if context.api is not None:
        await context.api.close()  # type: ignore[no-untyped-call]
