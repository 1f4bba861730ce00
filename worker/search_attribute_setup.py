"""Make sure the namespace knows the upgrade's search attributes before any workflow uses them.

A workflow that sets an unknown search attribute fails its task over and over, so the worker
checks at start-up: it registers what is missing where it may (dev server, self-hosted with the
operator API), and otherwise refuses to start with the command that fixes it.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from models import search_attributes


class MissingSearchAttributes(RuntimeError):
    pass


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the missing ones; returns their names (empty when all were there)."""
    operator = client.operator_service
    try:
        known = await operator.list_search_attributes(ListSearchAttributesRequest(namespace=client.namespace))
        present = set(known.custom_attributes) | set(known.system_attributes)
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        present = set()  # the time-skipping test server can add but not list them
    missing = [key.name for key in search_attributes.ALL if key.name not in present]
    if not missing:
        return []
    try:
        await operator.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in missing},
            )
        )
    except RPCError as err:
        if err.status == RPCStatusCode.ALREADY_EXISTS:
            return []
        commands = "; ".join(
            f"temporal operator search-attribute create --namespace {client.namespace} "
            f"--name {name} --type Keyword"
            for name in missing
        )
        raise MissingSearchAttributes(
            f"the namespace {client.namespace!r} lacks the search attributes {', '.join(missing)} "
            f"and they could not be added ({err.message}); create them: {commands}"
        ) from err
    return missing
