"""Azure Resource Manager's Compute API over the emulated cloud, as azure-mgmt-compute calls it
(and, from fleet/emulator/maintenance.py, Microsoft.Maintenance's configurations and their
assignments to scale sets; from fleet/emulator/insights.py, Microsoft.Insights metric alert rules
and their status, for alarm gates).

Every route wants `Authorization: Bearer …` (401 AuthenticationFailed), an `api-version` (400
MissingApiVersionParameter; any value is accepted and recorded), the emulator's subscription and
resource group. Actions are long-running as in ARM: 202 (PATCH: 200 with provisioningState
Updating) with Azure-AsyncOperation, Location, Retry-After and x-ms-request-id; the status URL is
`/subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/operations/{id}`. No action is
ever deduplicated: two reimage POSTs are two reimages.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from fleet.emulator import resources
from fleet.emulator.cloud import PROVIDER, RESOURCE_GROUP, SUBSCRIPTION, Cloud, CloudError, resource_id
from fleet.emulator.insights import add_insights_routes
from fleet.emulator.maintenance import add_maintenance_routes
from fleet.emulator.sizes import VM_SIZES
from models.fleet import OperationKind
from models.image import LATEST, ImageReference
from models.sorting import natural_key

__all__ = ["RESOURCE_GROUP", "SUBSCRIPTION", "arm_router"]

GROUP = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute"
VMSS_EXTENSIONS = GROUP + "/virtualMachineScaleSets/{vmss}/virtualMachines/{instance_id}/extensions"
LOCATIONS = "/subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}"
NETWORK = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network"
NETWORK_LOCATIONS = "/subscriptions/{sub}/providers/Microsoft.Network/locations/{loc}"
# Seconds a client should wait between polls of an operation (Azure sends its own guess).
POLL_SECONDS = 1


def arm_router(cloud: Cloud, api_versions: Counter[str]) -> APIRouter:
    async def check(request: Request) -> None:
        """What ARM checks before anything else: the token, the api-version, the scope. (async:
        a plain function would cost every call a trip through a thread.)"""
        if not request.headers.get("authorization", "").lower().startswith("bearer "):
            raise CloudError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing or not a Bearer token.",
            )
        version = request.query_params.get("api-version")
        if not version:
            raise CloudError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        api_versions[version] += 1
        sub = request.path_params.get("sub")
        if sub is not None and sub != SUBSCRIPTION:
            raise CloudError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
        rg = request.path_params.get("rg")
        if rg is not None and rg.lower() != RESOURCE_GROUP:
            raise CloudError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")

    router = APIRouter(dependencies=[Depends(check)])
    # Load balancer rule health answers not yet read, by result id.
    rule_answers: dict[str, dict[str, Any]] = {}

    # --- helpers ----------------------------------------------------------------------------

    def api_version(request: Request) -> str:
        return request.query_params["api-version"]

    def skip(request: Request) -> int:
        """Where the page starts: the offset a previous page's nextLink carries."""
        token = request.query_params.get("$skiptoken") or "0"
        if not token.isdigit():
            raise CloudError(400, "InvalidSkipToken", f"$skiptoken {token!r} is not one this API gave")
        return int(token)

    def page(request: Request, items: list[dict[str, Any]], size: int) -> dict[str, Any]:
        """One page of a list; `nextLink` carries the query (api-version included) and an offset."""
        start = skip(request)
        return paged(request, items[start : start + size], start, size, len(items))

    def paged(
        request: Request, items: list[dict[str, Any]], start: int, size: int, total: int
    ) -> dict[str, Any]:
        """A page already cut to [start, start + size) of `total` items."""
        document: dict[str, Any] = {"value": items}
        if start + size < total:
            query = {k: v for k, v in request.query_params.items() if k != "$skiptoken"}
            query["$skiptoken"] = str(start + size)
            document["nextLink"] = str(request.url.replace_query_params(**query))
        return document

    def accepted(
        request: Request, operation_id: str, location: str, status: int = 202, body: Any = None
    ) -> Response:
        base = str(request.base_url).rstrip("/")
        version = api_version(request)
        status_url = f"{base}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/locations/{location}"
        status_url += f"/operations/{operation_id}"
        headers = {
            "Azure-AsyncOperation": f"{status_url}?api-version={version}",
            "Location": f"{status_url}?monitor=true&api-version={version}",
            "Retry-After": str(POLL_SECONDS),
            "x-ms-request-id": str(uuid.uuid4()),
        }
        if body is None:
            return Response(status_code=status, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)

    def expanded(request: Request) -> bool:
        return (request.query_params.get("$expand") or "").lower() == "instanceview"

    def uniform(name: str) -> Any:
        spec = cloud.spec(name)
        if spec.orchestration_mode != "Uniform":
            raise CloudError(
                400,
                "OperationNotAllowed",
                f"scale set {name!r} has orchestrationMode Flexible: its instances are virtual machines "
                "(Microsoft.Compute/virtualMachines)",
            )
        return spec

    def vmss_vm(name: str, instance_id: str, expand: bool) -> dict[str, Any]:
        spec = uniform(name)
        instance = cloud.instance_view(name, instance_id, probe=expand)
        on_model = cloud.on_model(cloud.model_image(spec), instance)
        return resources.scale_set_vm(spec, instance, on_model, cloud.clock(), expand)

    def flexible_vm(vm: str, expand: bool) -> dict[str, Any]:
        name = cloud.flexible_scale_set_of(vm)
        spec = cloud.spec(name)
        return resources.virtual_machine(
            spec, cloud.instance_view(name, vm, probe=expand), cloud.clock(), expand
        )

    def scale_set_document(name: str) -> dict[str, Any]:
        row = cloud.db.execute("SELECT created_at FROM scale_sets WHERE name = ?", (name,)).fetchone()
        created = row["created_at"] if row else 0.0
        return resources.scale_set(cloud.spec(name), cloud.etag(name), created, cloud.capacity(name))

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        try:
            document = json.loads(raw)
        except ValueError:
            raise CloudError(400, "InvalidRequestContent", "The request content was invalid JSON.") from None
        if not isinstance(document, dict):
            raise CloudError(400, "InvalidRequestContent", "The request content must be a JSON object.")
        return document

    def reimage_image(name: str, instance_id: str, body: dict[str, Any]) -> ImageReference | None:
        """exactVersion: that version of the instance's current image definition."""
        exact = body.get("exactVersion")
        if not exact:
            return None
        current = cloud.instance_view(name, instance_id).image_reference
        return current.model_copy(update={"version": exact, "exact_version": None})

    def extension_of(name: str, instance_id: str, extension: str, expand: bool) -> dict[str, Any]:
        spec = cloud.spec(name)
        instance = cloud.instance_view(name, instance_id)
        found = instance.extension(extension)
        if found is None:
            raise CloudError(
                404,
                "NotFound",
                f"extension {extension!r} of instance {name}/{instance_id} was not found",
            )
        return resources.instance_extension(spec, instance, found, expand)

    def extensions_of(name: str, instance_id: str, expand: bool) -> dict[str, Any]:
        spec = cloud.spec(name)
        instance = cloud.instance_view(name, instance_id)
        return {
            "value": [resources.instance_extension(spec, instance, e, expand) for e in instance.extensions]
        }

    async def install_extension(
        request: Request, name: str, instance_id: str, extension: str, put: bool
    ) -> Response:
        """PUT (create or update) or PATCH (update) of one instance's extension: an install of
        properties.typeHandlerVersion, accepted as a long-running operation (never deduplicated)."""
        body = await body_of(request)
        properties = body.get("properties") or {}
        version = properties.get("typeHandlerVersion")
        if not isinstance(version, str) or not version:
            raise CloudError(400, "InvalidParameter", "properties.typeHandlerVersion: a version is required")
        spec = cloud.spec(name)
        existed = cloud.instance_view(name, instance_id).extension(extension) is not None
        operation = cloud.new_arm_operation(name)
        cloud.begin_install_extension(
            name,
            instance_id,
            extension,
            version,
            publisher=properties.get("publisher") if put else None,
            type_=properties.get("type") if put else None,
            arm_operation=operation,
        )
        document = extension_of(name, instance_id, extension, False)
        status = 201 if put and not existed else 200
        return accepted(request, operation, spec.location, status=status, body=document)

    # --- scale sets -------------------------------------------------------------------------

    @router.get(GROUP + "/virtualMachineScaleSets")
    async def list_scale_sets(request: Request) -> dict[str, Any]:
        return page(request, [scale_set_document(n) for n in cloud.scale_set_names()], 100)

    @router.get(GROUP + "/virtualMachineScaleSets/{vmss}")
    async def get_scale_set(vmss: str) -> dict[str, Any]:
        cloud.settle()
        return scale_set_document(vmss)

    @router.patch(GROUP + "/virtualMachineScaleSets/{vmss}")
    async def update_scale_set(vmss: str, request: Request) -> Response:
        """Change the model's image and sku.capacity (the updates the emulator models),
        honouring If-Match. A capacity change is long-running: the operation is done when every
        instance it creates is provisioned (or every one it deletes is gone)."""
        body = await body_of(request)
        profile = (body.get("properties") or {}).get("virtualMachineProfile") or {}
        raw = (profile.get("storageProfile") or {}).get("imageReference")
        spec = cloud.spec(vmss)
        sku = body.get("sku") or {}
        if sku.get("name") and str(sku["name"]).lower() != spec.vm_size.lower():
            raise CloudError(
                409,
                "OperationNotAllowed",
                f"sku.name: the emulator cannot change the VM size of {vmss} ({spec.vm_size})",
            )
        if raw:
            image = image_from_arm(raw)
            cloud.update_model(vmss, image, request.headers.get("if-match"))
        elif (match := request.headers.get("if-match")) is not None:
            cloud.update_model(vmss, spec.image_reference, match)
        operation = cloud.new_arm_operation(vmss)
        if "capacity" in sku:
            cloud.set_capacity(vmss, sku["capacity"], operation)
        document = scale_set_document(vmss)
        document["properties"]["provisioningState"] = "Updating"
        return accepted(request, operation, spec.location, status=200, body=document)

    @router.put(GROUP + "/virtualMachineScaleSets/{vmss}")
    async def put_scale_set(vmss: str, request: Request) -> Response:
        """Create or update: an existing set takes the image and capacity as a PATCH does (the
        emulator creates scale sets through its admin API only)."""
        cloud.spec(vmss)
        return await update_scale_set(vmss, request)

    @router.post(GROUP + "/virtualMachineScaleSets/{vmss}/delete")
    async def delete_scale_set_vms(vmss: str, request: Request) -> Response:
        """Delete instances by id ({"instanceIds": [...]}, begin_delete_instances; on a Flexible
        set, VM names)."""
        body = await body_of(request)
        ids = body.get("instanceIds")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise CloudError(
                400, "InvalidParameter", "instanceIds: a non-empty list of instance ids is required"
            )
        return delete_instances(request, vmss, ids)

    def delete_instances(request: Request, name: str, ids: list[str]) -> Response:
        operation = cloud.new_arm_operation(name)
        cloud.begin_delete_instances(name, ids, operation)
        return accepted(request, operation, cloud.spec(name).location)

    @router.post(GROUP + "/virtualMachineScaleSets/{vmss}/manualupgrade")
    async def manual_upgrade(vmss: str, request: Request) -> Response:
        body = await body_of(request)
        ids = body.get("instanceIds")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise CloudError(
                400, "InvalidParameter", "instanceIds: a non-empty list of instance ids is required"
            )
        spec = cloud.spec(vmss)
        operation = cloud.new_arm_operation(vmss)
        cloud.manual_upgrade(vmss, ids, operation)
        return accepted(request, operation, spec.location)

    # --- Uniform instances ------------------------------------------------------------------

    @router.get(GROUP + "/virtualMachineScaleSets/{vmss}/virtualMachines")
    async def list_scale_set_vms(vmss: str, request: Request) -> dict[str, Any]:
        spec = uniform(vmss)
        expand = expanded(request)
        start, size = skip(request), spec.page_size
        view = cloud.scale_set_view(vmss, probe=expand, offset=start, limit=size)
        now, model_image = cloud.clock(), cloud.model_image(spec)
        items = [
            resources.scale_set_vm(spec, i, cloud.on_model(model_image, i), now, expand)
            for i in view.instances
        ]
        return paged(request, items, start, size, cloud.instance_count(vmss))

    @router.get(GROUP + "/virtualMachineScaleSets/{vmss}/virtualMachines/{instance_id}")
    async def get_scale_set_vm(vmss: str, instance_id: str, request: Request) -> dict[str, Any]:
        return vmss_vm(vmss, instance_id, expanded(request))

    @router.delete(GROUP + "/virtualMachineScaleSets/{vmss}/virtualMachines/{instance_id}")
    async def delete_scale_set_vm(vmss: str, instance_id: str, request: Request) -> Response:
        uniform(vmss)
        return delete_instances(request, vmss, [instance_id])

    @router.get(GROUP + "/virtualMachineScaleSets/{vmss}/virtualMachines/{instance_id}/instanceView")
    async def get_scale_set_vm_instance_view(vmss: str, instance_id: str) -> dict[str, Any]:
        spec = uniform(vmss)
        return resources.instance_view(
            spec, cloud.instance_view(vmss, instance_id, probe=True), cloud.clock()
        )

    @router.post(GROUP + "/virtualMachineScaleSets/{vmss}/virtualMachines/{instance_id}/reimage")
    async def reimage_scale_set_vm(vmss: str, instance_id: str, request: Request) -> Response:
        spec = uniform(vmss)
        image = reimage_image(vmss, instance_id, await body_of(request))
        operation = cloud.new_arm_operation(vmss)
        cloud.begin_reimage(vmss, instance_id, image, operation)
        return accepted(request, operation, spec.location)

    @router.get(VMSS_EXTENSIONS)
    async def list_scale_set_vm_extensions(vmss: str, instance_id: str, request: Request) -> dict[str, Any]:
        uniform(vmss)
        return extensions_of(vmss, instance_id, expanded(request))

    @router.get(VMSS_EXTENSIONS + "/{extension}")
    async def get_scale_set_vm_extension(
        vmss: str, instance_id: str, extension: str, request: Request
    ) -> dict[str, Any]:
        uniform(vmss)
        return extension_of(vmss, instance_id, extension, expanded(request))

    @router.put(VMSS_EXTENSIONS + "/{extension}")
    async def put_scale_set_vm_extension(
        vmss: str, instance_id: str, extension: str, request: Request
    ) -> Response:
        uniform(vmss)
        return await install_extension(request, vmss, instance_id, extension, put=True)

    @router.patch(VMSS_EXTENSIONS + "/{extension}")
    async def patch_scale_set_vm_extension(
        vmss: str, instance_id: str, extension: str, request: Request
    ) -> Response:
        uniform(vmss)
        return await install_extension(request, vmss, instance_id, extension, put=False)

    # --- Flexible instances: virtual machines -----------------------------------------------

    @router.get(GROUP + "/virtualMachines")
    async def list_vms(request: Request) -> dict[str, Any]:
        """Every Flexible VM, or those of one scale set: $filter='virtualMachineScaleSet/id' eq '<id>'."""
        wanted = scale_set_filter(request.query_params.get("$filter"))
        expand = expanded(request)
        if wanted:  # one scale set's VMs (what the product asks): render only this page
            name = next((n for n in cloud.scale_set_names() if resource_id(n).lower() == wanted), None)
            spec = cloud.spec(name) if name else None
            if name is None or spec is None or spec.orchestration_mode != "Flexible":
                return {"value": []}
            start, size = skip(request), spec.page_size
            view = cloud.scale_set_view(name, probe=expand, offset=start, limit=size)
            now = cloud.clock()
            items = [resources.virtual_machine(spec, i, now, expand) for i in view.instances]
            return paged(request, items, start, size, cloud.instance_count(name))
        items = []
        size = 100
        for name in cloud.scale_set_names():
            spec = cloud.spec(name)
            if spec.orchestration_mode != "Flexible" or (wanted and wanted != resource_id(name).lower()):
                continue
            size = min(size, spec.page_size)
            now = cloud.clock()
            view = cloud.scale_set_view(name, probe=expand)
            items += [resources.virtual_machine(spec, i, now, expand) for i in view.instances]
        return page(request, items, size)

    @router.get(GROUP + "/virtualMachines/{vm}")
    async def get_vm(vm: str, request: Request) -> dict[str, Any]:
        return flexible_vm(vm, expanded(request))

    @router.get(GROUP + "/virtualMachines/{vm}/instanceView")
    async def get_vm_instance_view(vm: str) -> dict[str, Any]:
        name = cloud.flexible_scale_set_of(vm)
        return resources.instance_view(
            cloud.spec(name), cloud.instance_view(name, vm, probe=True), cloud.clock()
        )

    @router.delete(GROUP + "/virtualMachines/{vm}")
    async def delete_vm(vm: str, request: Request) -> Response:
        return delete_instances(request, cloud.flexible_scale_set_of(vm), [vm])

    @router.post(GROUP + "/virtualMachines/{vm}/reimage")
    async def reimage_vm(vm: str, request: Request) -> Response:
        name = cloud.flexible_scale_set_of(vm)
        image = reimage_image(name, vm, await body_of(request))
        operation = cloud.new_arm_operation(name)
        cloud.begin_reimage(name, vm, image, operation)
        return accepted(request, operation, cloud.spec(name).location)

    @router.post(GROUP + "/virtualMachines/{vm}/deallocate")
    async def deallocate_vm(vm: str, request: Request) -> Response:
        return power(request, vm, OperationKind.DEALLOCATE)

    @router.post(GROUP + "/virtualMachines/{vm}/start")
    async def start_vm(vm: str, request: Request) -> Response:
        return power(request, vm, OperationKind.START)

    def power(request: Request, vm: str, kind: OperationKind) -> Response:
        name = cloud.flexible_scale_set_of(vm)
        operation = cloud.new_arm_operation(name)
        cloud.begin_power(name, vm, kind, operation)
        return accepted(request, operation, cloud.spec(name).location)

    @router.patch(GROUP + "/virtualMachines/{vm}")
    async def update_vm(vm: str, request: Request) -> Response:
        """OS disk swap: properties.storageProfile.osDisk.managedDisk.id = a disk the VM had,
        only while the VM is deallocated (409 OperationNotAllowed otherwise)."""
        name = cloud.flexible_scale_set_of(vm)
        body = await body_of(request)
        storage = (body.get("properties") or {}).get("storageProfile") or {}
        disk = ((storage.get("osDisk") or {}).get("managedDisk") or {}).get("id")
        operation = cloud.new_arm_operation(name)
        if disk:
            prefix = f"{PROVIDER}/disks/".lower()
            if not disk.lower().startswith(prefix):
                raise CloudError(404, "NotFound", f"disk {disk!r} was not found")
            disk_name = disk[len(prefix) :]
            if disk_name != cloud.instance_view(name, vm).os_disk.name:
                cloud.begin_restore(name, vm, disk_name, operation)
        return accepted(
            request, operation, cloud.spec(name).location, status=200, body=flexible_vm(vm, False)
        )

    @router.get(GROUP + "/virtualMachines/{vm}/extensions")
    async def list_vm_extensions(vm: str, request: Request) -> dict[str, Any]:
        return extensions_of(cloud.flexible_scale_set_of(vm), vm, expanded(request))

    @router.get(GROUP + "/virtualMachines/{vm}/extensions/{extension}")
    async def get_vm_extension(vm: str, extension: str, request: Request) -> dict[str, Any]:
        return extension_of(cloud.flexible_scale_set_of(vm), vm, extension, expanded(request))

    @router.put(GROUP + "/virtualMachines/{vm}/extensions/{extension}")
    async def put_vm_extension(vm: str, extension: str, request: Request) -> Response:
        return await install_extension(request, cloud.flexible_scale_set_of(vm), vm, extension, put=True)

    @router.patch(GROUP + "/virtualMachines/{vm}/extensions/{extension}")
    async def patch_vm_extension(vm: str, extension: str, request: Request) -> Response:
        return await install_extension(request, cloud.flexible_scale_set_of(vm), vm, extension, put=False)

    # --- quota -------------------------------------------------------------------------------

    @router.get(LOCATIONS + "/usages")
    async def usages(loc: str) -> dict[str, Any]:
        """The region's vCPU usage and limits: in all (`cores`) and per VM family."""
        return {"value": [resources.usage(*entry) for entry in cloud.usages(loc)]}

    @router.get("/subscriptions/{sub}/providers/Microsoft.Compute/skus")
    async def resource_skus(request: Request) -> dict[str, Any]:
        """The VM sizes offered ($filter=location eq '<region>': those of one region; the
        emulator offers every size everywhere)."""
        where = location_filter(request.query_params.get("$filter"))
        locations = [where] if where else sorted(resources.REGION_NAMES)
        return {"value": [resources.resource_sku(name, size, locations) for name, size in VM_SIZES.items()]}

    # --- operations -------------------------------------------------------------------------

    @router.get(LOCATIONS + "/operations/{operation_id}")
    async def operation_status(operation_id: str, request: Request) -> Response:
        """The Azure-AsyncOperation document; with monitor=true the Location answer: 202 while in
        progress, 200 once it succeeded, the error once it failed."""
        status = cloud.arm_operation(operation_id)
        if request.query_params.get("monitor") != "true":
            headers = {"Retry-After": str(POLL_SECONDS)} if status["status"] == "InProgress" else {}
            return JSONResponse(status, headers=headers)
        if status["status"] == "InProgress":
            return Response(
                status_code=202, headers={"Retry-After": str(POLL_SECONDS), "Location": str(request.url)}
            )
        if status["status"] == "Failed":
            return JSONResponse({"error": status["error"]}, status_code=409)
        return Response(status_code=200)

    # --- images -----------------------------------------------------------------------------

    def gallery_versions(request: Request, gallery: str, image: str) -> tuple[str, list[Any]]:
        image_id = f"{PROVIDER}/galleries/{gallery}/images/{image}"
        rows = cloud.image_rows(image_id.lower())
        if not rows:
            raise CloudError(404, "ResourceNotFound", f"gallery image {image_id!r} was not found")
        return image_id, rows

    def gallery_document(image_id: str, row: Any, replication: bool) -> dict[str, Any]:
        return resources.gallery_version(
            image_id,
            row["version"],
            default_location(),
            json.loads(row["regions"]),
            json.loads(row["excluded_regions"]),
            bool(row["exclude_from_latest"]),
            row["published_at"],
            row["end_of_life"],
            replication,
        )

    def default_location() -> str:
        names = cloud.scale_set_names()
        return cloud.spec(names[0]).location if names else "westeurope"

    # --- load balancers (a set's health probe) ---------------------------------------------

    def balanced_set(balancer: str) -> str:
        """The scale set a load balancer `<set>-lb` serves (404 as Microsoft.Network says it)."""
        name = balancer.removesuffix("-lb")
        if not balancer.endswith("-lb") or name not in cloud.scale_set_names():
            missing = f"The Resource 'Microsoft.Network/loadBalancers/{balancer}' was not found."
            raise CloudError(404, "ResourceNotFound", missing)
        return name

    @router.get(NETWORK + "/loadBalancers/{balancer}")
    async def get_load_balancer(balancer: str) -> dict[str, Any]:
        return resources.load_balancer(cloud.spec(balanced_set(balancer)))

    @router.post(NETWORK + "/loadBalancers/{balancer}/loadBalancingRules/{rule}/health")
    async def rule_health(balancer: str, rule: str, request: Request) -> Response:
        """Accepted (202), the answer at the Location a second later: Azure's is long-running."""
        name = balanced_set(balancer)
        if rule.lower() != resources.HEALTH_RULE:
            raise CloudError(404, "ResourceNotFound", f"load balancing rule {rule!r} was not found")
        spec = cloud.spec(name)
        result_id = str(uuid.uuid4())
        rule_answers[result_id] = resources.rule_health(spec, cloud.load_balancer_answers(name))
        base = str(request.base_url).rstrip("/")
        results = f"{base}{NETWORK_LOCATIONS.format(sub=SUBSCRIPTION, loc=spec.location)}/operationResults"
        location = f"{results}/{result_id}?api-version={api_version(request)}"
        headers = {"Location": location, "Retry-After": "1"}
        return Response(status_code=202, headers=headers)

    @router.get(NETWORK_LOCATIONS + "/operationResults/{result_id}")
    async def rule_health_result(result_id: str) -> dict[str, Any]:
        answer = rule_answers.pop(result_id, None)
        if answer is None:
            raise CloudError(404, "NotFound", f"operation result {result_id!r} was not found (or was read)")
        return answer

    @router.get(GROUP + "/galleries/{gallery}/images/{image}/versions")
    async def list_gallery_versions(gallery: str, image: str, request: Request) -> dict[str, Any]:
        image_id, rows = gallery_versions(request, gallery, image)
        return page(request, [gallery_document(image_id, row, False) for row in rows], 100)

    @router.get(GROUP + "/galleries/{gallery}/images/{image}/versions/{version}")
    async def get_gallery_version(gallery: str, image: str, version: str, request: Request) -> dict[str, Any]:
        image_id, rows = gallery_versions(request, gallery, image)
        row = next((r for r in rows if r["version"] == version), None)
        if row is None:
            raise CloudError(
                404, "ResourceNotFound", f"gallery image version {image_id}/versions/{version} was not found"
            )
        replication = (request.query_params.get("$expand") or "").lower() == "replicationstatus"
        return gallery_document(image_id, row, replication)

    @router.get(
        LOCATIONS + "/publishers/{publisher}/artifacttypes/vmimage/offers/{offer}/skus/{sku}/versions"
    )
    async def marketplace_versions(
        loc: str, publisher: str, offer: str, sku: str, request: Request
    ) -> Response:
        """A bare JSON array, as Azure answers; $orderby=name sorts as strings (8.10 before 8.9)."""
        key = "|".join(part.lower() for part in (publisher, offer, sku))
        versions = [
            row["version"]
            for row in cloud.image_rows(key)
            if "*" in json.loads(row["regions"]) or loc in json.loads(row["regions"])
        ]
        order = (request.query_params.get("$orderby") or "").lower()
        if order.startswith("name"):
            versions.sort(reverse=order.endswith("desc"))
        if top := request.query_params.get("$top"):
            versions = versions[: int(top)]
        return JSONResponse([resources.marketplace_version(loc, publisher, offer, sku, v) for v in versions])

    @router.get(LOCATIONS + "/publishers/{publisher}/artifacttypes/vmextension/types/{type_}/versions")
    async def extension_versions(loc: str, publisher: str, type_: str, request: Request) -> Response:
        """A bare JSON array of the versions published in `loc` (VirtualMachineExtensionImage);
        $orderby=name sorts as strings, as Azure does; $top cuts."""
        versions = sorted(cloud.extension_versions(publisher, type_, loc), key=natural_key)
        order = (request.query_params.get("$orderby") or "").lower()
        if order.startswith("name"):
            versions.sort(reverse=order.endswith("desc"))
        if (top := request.query_params.get("$top")) and top.isdigit():
            versions = versions[: int(top)]
        return JSONResponse([resources.extension_version(loc, publisher, type_, v) for v in versions])

    add_maintenance_routes(router, cloud, body_of)
    add_insights_routes(router, cloud)
    return router


def scale_set_filter(text: str | None) -> str | None:
    """The scale set id of `'virtualMachineScaleSet/id' eq '<id>'` (lowercased), else None."""
    if not text:
        return None
    field, _, value = text.partition(" eq ")
    if field.strip().strip("'").lower() != "virtualmachinescaleset/id" or not value:
        raise CloudError(400, "InvalidParameter", f"$filter {text!r} is not supported")
    return value.strip().strip("'").lower()


def location_filter(text: str | None) -> str | None:
    """The region of `location eq '<region>'`, else None."""
    if not text:
        return None
    field, _, value = text.partition(" eq ")
    if field.strip().lower() != "location" or not value:
        raise CloudError(400, "InvalidParameter", f"$filter {text!r} is not supported (only location eq)")
    return value.strip().strip("'")


def image_from_arm(raw: dict[str, Any]) -> ImageReference:
    """An ARM imageReference (gallery id with or without /versions/V, or publisher/offer/sku)."""
    if raw.get("id"):
        return ImageReference.parse(raw["id"])
    return ImageReference.model_validate(
        {k: raw[k] for k in ("publisher", "offer", "sku") if k in raw}
        | {"version": raw.get("version") or LATEST}
    )
