"""Microsoft.Maintenance in the emulator, as ARM serves it (api-version 2023-04-01; any is
accepted): maintenance configurations (PUT, GET, DELETE) and their assignments to scale sets
(PUT, GET and DELETE one, GET the list at `.../virtualMachineScaleSets/{vmss}/providers/
Microsoft.Maintenance/configurationAssignments`).

A PUT of an OSImage configuration is held to Azure's rules for that scope (a window of at least
5 hours, recurring every day, in a Windows time zone) and answered 400 InvalidParameter naming
the field; other scopes are kept as given. An assignment must name a configuration that exists.
Names are case-insensitive, as in ARM.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from fleet.emulator.cloud import RESOURCE_GROUP, SUBSCRIPTION, Cloud, CloudError, resource_id
from models.base import describe_validation_error
from models.maintenance import OS_IMAGE, MaintenanceConfigurationProperties

MAINTENANCE = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Maintenance"
CONFIGURATIONS = MAINTENANCE + "/maintenanceConfigurations"
ASSIGNMENTS = (
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/{vmss}"
    "/providers/Microsoft.Maintenance/configurationAssignments"
)
CONFIGURATION_TYPE = "Microsoft.Maintenance/maintenanceConfigurations"
ASSIGNMENT_TYPE = "Microsoft.Maintenance/configurationAssignments"
CONFIGURATION_PREFIX = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/{CONFIGURATION_TYPE}/"
)


def configuration_id(name: str) -> str:
    return CONFIGURATION_PREFIX + name


def invalid(message: str) -> CloudError:
    return CloudError(400, "InvalidParameter", message)


def configuration_document(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The resource a PUT makes, as a GET answers it; refused as Azure refuses it."""
    location = body.get("location")
    if not isinstance(location, str) or not location:
        raise CloudError(400, "LocationRequired", "The location property is required for this definition.")
    properties = body.get("properties")
    if not isinstance(properties, dict):
        raise invalid("properties: is required")
    scope = properties.get("maintenanceScope")
    if not isinstance(scope, str) or not scope:
        raise invalid("properties.maintenanceScope: is required")
    properties = {"namespace": "Microsoft.Maintenance", "visibility": "Custom", **properties}
    if scope.lower() == OS_IMAGE.lower():
        try:
            checked = MaintenanceConfigurationProperties.model_validate(properties)
            properties = {**properties, **checked.to_json()}
        except ValidationError as err:
            raise invalid("; ".join(describe_validation_error(err, "properties").splitlines())) from None
    return {
        "id": configuration_id(name),
        "name": name,
        "type": CONFIGURATION_TYPE,
        "location": location,
        "tags": body.get("tags") or {},
        "properties": properties,
    }


def add_maintenance_routes(
    router: APIRouter, cloud: Cloud, body_of: Callable[[Request], Awaitable[dict[str, Any]]]
) -> None:
    """The routes, on the ARM router (its token, api-version and scope checks)."""

    def stored_configuration(name: str) -> dict[str, Any]:
        row = cloud.db.execute(
            "SELECT document FROM maintenance_configurations WHERE name = ?", (name.lower(),)
        ).fetchone()
        if row is None:
            raise CloudError(404, "ResourceNotFound", f"maintenance configuration {name!r} was not found")
        document: dict[str, Any] = json.loads(row["document"])
        return document

    def assignment_document(vmss: str, name: str, configuration: str) -> dict[str, Any]:
        return {
            "id": f"{resource_id(vmss)}/providers/{ASSIGNMENT_TYPE}/{name}",
            "name": name,
            "type": ASSIGNMENT_TYPE,
            "properties": {"maintenanceConfigurationId": configuration, "resourceId": resource_id(vmss)},
        }

    @router.put(CONFIGURATIONS + "/{name}")
    async def put_configuration(name: str, request: Request) -> dict[str, Any]:
        document = configuration_document(name, await body_of(request))
        cloud.db.execute(
            "INSERT OR REPLACE INTO maintenance_configurations (name, document) VALUES (?, ?)",
            (name.lower(), json.dumps(document)),
        )
        return document

    @router.get(CONFIGURATIONS + "/{name}")
    async def get_configuration(name: str) -> dict[str, Any]:
        return stored_configuration(name)

    @router.delete(CONFIGURATIONS + "/{name}")
    async def delete_configuration(name: str) -> Response:
        cursor = cloud.db.execute("DELETE FROM maintenance_configurations WHERE name = ?", (name.lower(),))
        return Response(status_code=200 if cursor.rowcount else 204)

    @router.put(ASSIGNMENTS + "/{name}")
    async def put_assignment(vmss: str, name: str, request: Request) -> dict[str, Any]:
        cloud.spec(vmss)  # 404 for a scale set that does not exist
        chosen = ((await body_of(request)).get("properties") or {}).get("maintenanceConfigurationId")
        if not isinstance(chosen, str) or not chosen:
            raise invalid("properties.maintenanceConfigurationId: is required")
        if not chosen.lower().startswith(CONFIGURATION_PREFIX.lower()):
            raise invalid(
                f"properties.maintenanceConfigurationId: {chosen!r} is not a maintenance configuration"
            )
        stored_configuration(chosen[len(CONFIGURATION_PREFIX) :])  # 404 if it does not exist
        cloud.db.execute(
            "INSERT OR REPLACE INTO configuration_assignments (scale_set, name, document) VALUES (?, ?, ?)",
            (vmss, name.lower(), json.dumps(assignment_document(vmss, name, chosen))),
        )
        return assignment_document(vmss, name, chosen)

    def assignments(vmss: str) -> list[dict[str, Any]]:
        cloud.spec(vmss)
        rows = cloud.db.execute(
            "SELECT document FROM configuration_assignments WHERE scale_set = ? ORDER BY name", (vmss,)
        )
        return [json.loads(row["document"]) for row in rows]

    @router.get(ASSIGNMENTS)
    async def list_assignments(vmss: str) -> dict[str, Any]:
        return {"value": assignments(vmss)}

    @router.get(ASSIGNMENTS + "/{name}")
    async def get_assignment(vmss: str, name: str) -> dict[str, Any]:
        found = next((a for a in assignments(vmss) if a["name"].lower() == name.lower()), None)
        if found is None:
            raise CloudError(404, "ResourceNotFound", f"configuration assignment {name!r} was not found")
        return found

    @router.delete(ASSIGNMENTS + "/{name}")
    async def delete_assignment(vmss: str, name: str) -> Response:
        cloud.spec(vmss)
        cursor = cloud.db.execute(
            "DELETE FROM configuration_assignments WHERE scale_set = ? AND name = ?", (vmss, name.lower())
        )
        return Response(status_code=200 if cursor.rowcount else 204)
