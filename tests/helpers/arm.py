"""What the tests of the Azure back end and of Azure's own SDK against the emulator share: the
emulator's subscription, resource group and images, the fields an SDK model would lose, and
what the emulator's instance records say about capacity."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from models.fleet import InstanceRecord

# The emulator's subscription and resource group, a gallery image and a marketplace image in them.
SUB = "00000000-0000-0000-0000-000000000000"
RG = "fleet-emulator"
PROVIDER = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute"
GALLERY_IMAGE = f"{PROVIDER}/galleries/fleet/images/web"
OTHER_SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"  # a second subscription
MARKET = {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server"}


PUBLISHER = "Contoso.Monitoring"


def agent(type_: str, version: str = "1.2", **properties: Any) -> dict[str, Any]:
    """An extension of a scale set's model as ARM writes it, one Azure upgrades itself."""
    return {
        "name": "agent",
        "publisher": PUBLISHER,
        "type": type_,
        "typeHandlerVersion": version,
        "autoUpgradeMinorVersion": False,
        "enableAutomaticUpgrade": True,
        **properties,
    }


def unknown_fields(model: Any, document: Any, path: str = "") -> list[str]:
    """Keys of `document` the SDK model has no field for (they would be lost to a typed reader)."""
    if isinstance(document, list):
        return [f for i, item in enumerate(document) for f in unknown_fields(model[i], item, f"{path}[{i}]")]
    if not isinstance(document, dict) or not hasattr(model, "_attr_to_rest_field"):
        return []
    fields = {rf._rest_name: attr for attr, rf in model._attr_to_rest_field.items()}
    missing = []
    for key, value in document.items():
        if key not in fields:
            missing.append(f"{path}.{key}")
        elif key != "properties" or not isinstance(getattr(model, fields[key], None), type(None)):
            missing += unknown_fields(getattr(model, fields[key]), value, f"{path}.{key}")
    return missing


def fewest_serving(records: list[InstanceRecord], *, ready: bool = False) -> int:
    """The fewest instances of a scale set serving at any instant its records cover (the
    emulator's InstanceRecords): created (with `ready`, booted) and not yet being deleted. An
    upgrade that creates before it deletes never drops below the set's size."""

    def start(record: InstanceRecord) -> datetime | None:
        return record.ready if ready else record.created

    def serving(at: datetime) -> int:
        return sum(
            1
            for r in records
            if (begun := start(r)) is not None
            and begun <= at
            and (r.delete_started is None or at < r.delete_started)
        )

    instants = {t for r in records for t in (start(r), r.delete_started) if t is not None}
    return min(serving(at) for at in instants)
