"""Where Temporal is, read from the environment, and how to connect (Azure: fleet/azure/settings.py).

The worker and `upgradectl` both connect through here, so they always agree on the task queue
and the data converter. TLS and API keys come from the SDK's environment configuration
(TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_TASK_QUEUE = "rolling-upgrades"
# A Temporal server that is starting takes connections a moment before its frontend serves, and
# answers "Frontend is not healthy yet" meanwhile: a worker or `upgradectl` started alongside it
# waits that out. Any other failure (nothing listening, bad TLS) still fails at once.
STARTING_SERVER_WAIT = 30.0
STARTING_SERVER_POLL = 0.2


@dataclass(frozen=True)
class Settings:
    task_queue: str = field(default_factory=lambda: os.environ.get("UPGRADE_TASK_QUEUE", DEFAULT_TASK_QUEUE))
    max_concurrent_activities: int = field(
        default_factory=lambda: int(os.environ.get("UPGRADE_MAX_CONCURRENT_ACTIVITIES", "1000"))
    )


async def connect(address: str | None = None, namespace: str | None = None) -> Client:
    """A client with the pydantic data converter; arguments override the environment."""
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", DEFAULT_ADDRESS)
    if address:
        config["target_host"] = address
    if namespace:
        config["namespace"] = namespace
    deadline = time.monotonic() + STARTING_SERVER_WAIT
    while True:
        try:
            return await Client.connect(**config, data_converter=pydantic_data_converter)
        except RuntimeError as err:
            if "not healthy yet" not in str(err) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(STARTING_SERVER_POLL)
