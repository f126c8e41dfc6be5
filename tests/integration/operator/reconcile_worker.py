"""One replica's single reconcile of one object: a real OS process.

Run as ``python reconcile_worker.py CONFIG_JSON``, the cloud named in its
environment as for the operator (``LBOP_BACKEND``, ``LBOP_CLOUD_URL``, the
cloud's credentials). Two of these reproduce
what two replicas do when both see a new object at once, without depending
on when Kopf happens to deliver events. Prints one JSON line
``{"waiting": <holder>}`` the moment it starts waiting for a lock another
process holds, and the cloud UUID it ended with as its last line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from kubernetes.aio import client, config

from lb_operator.cloud.backends import open_backend
from lb_operator.mutex import LeaseMutex
from lb_operator.reconcile import engine
from lb_operator.reconcile.engine import Context
from lb_operator.reconcile.kinds import ADAPTERS
from lb_operator.reconcile.resources import Resource, ResourceAPI
from lb_operator.settings import OperatorSettings


def _told(obj: Resource, type_: str, reason: str, message: str) -> None:
    if reason == "WaitingForLock":  # "waiting for <lease> held by <holder>"
        print(json.dumps({"waiting": message.rsplit(" held by ", 1)[-1]}), flush=True)


async def main(cfg: dict[str, Any]) -> None:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=cfg["kubeconfig"], client_configuration=configuration)
    settings = OperatorSettings.from_env(
        {**os.environ, "LBOP_IDENTITY": cfg["identity"], "LBOP_NAMESPACE": cfg["namespace"]}
    )
    cloud = await open_backend(
        settings.backend,
        settings.cloud_url,
        settings.cloud_token_file,
        settings.cloud_request_timeout,
        settings.cloud_connections,
    )
    obj = Resource.from_body(cfg["object"])
    async with (
        client.ApiClient(configuration) as api,
        LeaseMutex(api, settings.namespace, settings.identity, settings.mutex_settings()) as mutex,
    ):
        ctx = Context(
            cloud=cloud, mutex=mutex, settings=settings, resources=ResourceAPI(api), api=None, events=_told
        )
        loop = asyncio.get_running_loop()
        outcome = await engine.reconcile(ADAPTERS[obj.kind], ctx, obj, loop.time() + 60)
        print(json.dumps({"identity": cfg["identity"], "uuid": outcome.status["uuid"]}), flush=True)
    await cloud.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
