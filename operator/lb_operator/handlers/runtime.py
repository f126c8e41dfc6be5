"""What the handlers share for the life of the process: API clients, the cloud client, the mutex."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import kopf
from kubernetes.aio import client, config

from lb_operator.cloud import CloudscaleClient, CloudscaleSettings
from lb_operator.mutex import LeaseMutex
from lb_operator.reconcile.engine import Context
from lb_operator.reconcile.resources import Resource, ResourceReader
from lb_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)


async def kubernetes_client() -> client.ApiClient:
    """An async API client: in-cluster credentials in a pod, else the kubeconfig."""
    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        await config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    return client.ApiClient(configuration)


async def open_context(events: Callable[[Resource, str, str, str], None]) -> Context:
    """Read the settings, open the clients; a misconfiguration stops the operator here, clearly."""
    settings = OperatorSettings.from_env()
    api = await kubernetes_client()
    cloud = CloudscaleClient(
        CloudscaleSettings(base_url=settings.cloud_url, token_file=settings.cloud_token_file)
    )
    try:
        await cloud.open()
    except ValueError as error:
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
        "lb-operator %s: cloud %s, locks in namespace %s",
        settings.identity,
        settings.cloud_url,
        settings.namespace,
    )
    return Context(
        cloud=cloud, mutex=mutex, settings=settings, resources=ResourceReader(api), events=events, api=api
    )


async def close_context(context: Context) -> None:
    if context.mutex is not None:
        await context.mutex.close()
    close = getattr(context.cloud, "close", None)
    if close is not None:
        await close()
    if context.api is not None:
        await context.api.close()  # type: ignore[no-untyped-call]
