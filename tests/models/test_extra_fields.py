"""Unknown fields: ignored in every payload at every depth, refused by path in what users write.

During a deploy an old worker reads what a new one wrote (workflow and activity inputs and
results, signals, updates, queries, memos), so a field it does not know must never fail a
workflow task or an activity. A user's `--policy` or `--file` is another matter: an unknown
field there is a typo, refused by its path.

The table is generated: every model of `models/` (and every model a workflow or activity
handler takes or returns; memos, heartbeat and failure details are models of `models/` too),
every object path its fields lead to, an unknown field at each.
"""

from __future__ import annotations

import copy
import datetime
import enum
import importlib
import json
import pkgutil
import types
import typing
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from pydantic import AwareDatetime, BaseModel, ValidationError
from temporalio import activity, workflow
from temporalio.contrib.pydantic import pydantic_data_converter

import models
from activities.alarms import AlarmActivities
from activities.automatic_activities import AutomaticActivities
from activities.fleet_activities import FleetActivities
from activities.webhooks import WebhookActivities
from models.alarms import Alarm, HttpAlarm, PrometheusAlarm
from models.base import AzureModel, describe_validation_error
from models.fleet import FaultSpec, ScaleSetSpec
from models.image import ImageReference
from models.maintenance import MaintenanceWindow, OSImageScoped
from models.policy import UpgradePolicy
from models.upgrade import BatchRequest, UpgradeRequest
from worker.assembly import WORKFLOWS

NEW_FIELD = "someNewField"
Path = tuple[str | int, ...]


# --- what crosses a boundary ---------------------------------------------------------------------


def models_of_the_package() -> set[type[AzureModel]]:
    found: set[type[AzureModel]] = set()
    for info in pkgutil.iter_modules(models.__path__):
        module = importlib.import_module(f"models.{info.name}")
        found |= {
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, AzureModel) and value is not AzureModel
        }
    return found


def handlers() -> Iterator[Any]:
    """Every function whose arguments and result Temporal carries: workflows' run, signal,
    update and query handlers, and activities."""
    for cls in WORKFLOWS:
        definition = workflow._Definition.must_from_class(cls)
        yield definition.run_fn
        for group in (definition.signals, definition.updates, definition.queries):
            yield from (handler.fn for handler in group.values())
    for activities in (
        FleetActivities(None).all(),
        AutomaticActivities(None).all(),
        WebhookActivities().all(),
        AlarmActivities(None).all(),
    ):
        yield from (activity._Definition.must_from_callable(fn).fn for fn in activities)


def arms(annotation: Any) -> list[Any]:
    """The types an annotation may hold (Annotated unwrapped, unions split, None left out)."""
    if get_origin(annotation) is Annotated:
        return arms(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [arm for arg in get_args(annotation) for arm in arms(arg) if arm is not type(None)]
    return [annotation]


def models_in(annotation: Any) -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = set()
    for arm in arms(annotation):
        if isinstance(arm, type) and issubclass(arm, BaseModel):
            found.add(arm)
        else:
            for arg in get_args(arm):
                found |= models_in(arg)
    return found


def boundary_models() -> set[type[BaseModel]]:
    """The models in the handlers' signatures, and the models their fields hold."""
    found: set[type[BaseModel]] = set()
    todo = [m for fn in handlers() for hint in typing.get_type_hints(fn).values() for m in models_in(hint)]
    while todo:
        model = todo.pop()
        if model not in found:
            found.add(model)
            todo += [m for field in model.model_fields.values() for m in models_in(field.annotation)]
    return found


PAYLOAD_MODELS = sorted(models_of_the_package() | boundary_models(), key=lambda m: m.__qualname__)


def test_every_model_temporal_carries_is_an_azure_model():
    carried = boundary_models()
    assert {m.__qualname__ for m in carried if not issubclass(m, AzureModel)} == set()
    # The walk reaches the payloads the issue names, nested ones included.
    assert {UpgradeRequest, BatchRequest, ImageReference} <= carried


# --- documents and the object paths their schema leads to ----------------------------------------

# Models whose valid documents need more than their required fields (and their subclasses).
LEAVES: dict[type[BaseModel], dict[str, Any]] = {
    ImageReference: {"publisher": "Canonical", "offer": "ubuntu", "sku": "22_04-lts"},
    MaintenanceWindow: {"startDateTime": "2025-01-31 22:00", "duration": "05:00", "timeZone": "UTC"},
    OSImageScoped: {"maintenanceScope": "OSImage"},
    HttpAlarm: {"url": "http://alarms/app"},
    PrometheusAlarm: {"url": "http://prometheus:9090"},
}


def leaves_of(model: type[BaseModel]) -> dict[str, Any]:
    return {
        key: value
        for base, leaves in LEAVES.items()
        if issubclass(model, base)
        for key, value in leaves.items()
    }


# Fields of which a valid document holds one, never both: a document with each.
EXCLUSIVE: dict[type[BaseModel], tuple[str, ...]] = {
    UpgradeRequest: ("targetImage", "extensions"),
    Alarm: ("http", "prometheus", "azureMonitor"),  # one source each
}
SCALARS: dict[Any, Any] = {
    bool: False,
    int: 1,
    float: 1.0,
    str: "1.0",  # a name, a version, a major.minor: what most patterns accept
    datetime.datetime: "2025-01-01T00:00:00Z",
    AwareDatetime: "2025-01-01T00:00:00Z",
    datetime.timedelta: "PT1M",
    Any: {},
}


def key_of(model: type[BaseModel], name: str) -> str:
    return model.model_fields[name].alias or name


def paths(annotation: Any, seen: tuple[type, ...] = ()) -> Iterator[Path]:
    """Every path to an object (a model) in a document of `annotation`, from its fields."""
    for arm in arms(annotation):
        origin = get_origin(arm)
        if isinstance(arm, type) and issubclass(arm, BaseModel):
            if arm in seen:
                continue
            yield ()
            for name, field in arm.model_fields.items():
                yield from ((key_of(arm, name), *p) for p in paths(field.annotation, (*seen, arm)))
        elif origin in (list, tuple, set, frozenset):
            yield from ((0, *p) for p in paths(get_args(arm)[0], seen))
        elif origin is dict:
            yield from (("key", *p) for p in paths(get_args(arm)[1], seen))


def documents(annotation: Any, seen: tuple[type, ...] = ()) -> list[Any]:
    """Valid JSON values of `annotation` that together hold an object at each of its paths."""
    found: list[Any] = []
    for arm in arms(annotation):
        origin = get_origin(arm)
        if isinstance(arm, type) and issubclass(arm, BaseModel):
            found += model_documents(arm, seen)
        elif origin in (list, tuple, set, frozenset):
            found += [[item] for item in documents(get_args(arm)[0], seen)]
        elif origin is dict:
            found += [{"key": value} for value in documents(get_args(arm)[1], seen)]
        elif origin is Literal:
            found.append(get_args(arm)[0])
        elif isinstance(arm, type) and issubclass(arm, enum.Enum):
            found.append(next(iter(arm)).value)
        else:
            found.append(SCALARS[arm])
    return found


def model_documents(model: type[BaseModel], seen: tuple[type, ...]) -> list[dict[str, Any]]:
    """The required fields and every field that can hold an object (recursion aside)."""
    choices = {
        key_of(model, name): documents(field.annotation, (*seen, model))
        for name, field in model.model_fields.items()
        if field.is_required() or (models_in(field.annotation) - {*seen, model})
    }
    first = {key: values[0] for key, values in choices.items()} | leaves_of(model)
    variants = [first] + [first | {key: value} for key, values in choices.items() for value in values[1:]]
    exclusive = EXCLUSIVE.get(model, ())
    if exclusive:
        variants = [
            {key: value for key, value in variant.items() if key not in exclusive or key == kept}
            for variant in variants
            for kept in exclusive
        ]
    return variants


def with_new_field(document: Any, path: Path) -> Any | None:
    """A copy of `document` with an unknown field in the object at `path` (None: no object there)."""
    changed = copy.deepcopy(document)
    target = changed
    for part in path:
        try:
            target = target[part]
        except (KeyError, IndexError, TypeError):
            return None
    if not isinstance(target, dict):
        return None
    target[NEW_FIELD] = 1
    return changed


def without_new_field(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_new_field(v) for k, v in value.items() if k != NEW_FIELD}
    if isinstance(value, list):
        return [without_new_field(v) for v in value]
    return value


def cases(models: list[type[BaseModel]], *, written: bool) -> list[Any]:
    """(model, path, document, the document with an unknown field at the path), one per path.
    `written`: the documents as a worker writes them (every field), else as generated."""
    table = []
    for model in models:
        samples = documents(model)
        if written:
            samples = [model.model_validate(d).model_dump(mode="json") for d in samples]
        for path in sorted(set(paths(model)), key=lambda p: (len(p), str(p))):
            injected = [(d, c) for d in samples if (c := with_new_field(d, path)) is not None]
            assert injected, f"{model.__qualname__}: no example document has an object at {path}"
            document, changed = injected[0]
            dotted = ".".join(str(part) for part in path) or "(top)"
            table.append(pytest.param(model, path, document, changed, id=f"{model.__qualname__}:{dotted}"))
    return table


# --- payloads: ignored ---------------------------------------------------------------------------


def through_temporal(model: type[BaseModel], document: Any) -> Any:
    """What a worker reads from the payload `document`, through the product's data converter."""
    converter = pydantic_data_converter.payload_converter
    (payload,) = converter.to_payloads([document])
    assert json.loads(payload.data) == document
    (value,) = converter.from_payloads([payload], [model])
    assert isinstance(value, model)
    return value


@pytest.mark.parametrize(("model", "path", "document", "changed"), cases(PAYLOAD_MODELS, written=True))
def test_a_payload_ignores_an_unknown_field_at_every_depth(model, path, document, changed):
    expected = through_temporal(model, document).model_dump(mode="json")
    read = through_temporal(model, changed).model_dump(mode="json")
    # Known fields survive; the new one is dropped (or kept where a model keeps what it does not
    # know: a status's policy as Azure reports it).
    assert without_new_field(read) == expected


def test_payloads_the_issue_names_ignore_new_nested_fields():
    # A BatchRequest with a new field inside `health` or `targetImage`, an UpgradeRequest with
    # one inside `targetImage`: refused before this change.
    ids = {p.id for p in cases(PAYLOAD_MODELS, written=True)}
    assert {"BatchRequest:health", "BatchRequest:targetImage", "UpgradeRequest:targetImage"} <= ids


# --- what users write: refused by path -----------------------------------------------------------

# `--policy` (start, plan, auto enable), `fleet create --file` and the emulator's admin API
# (a scale set's spec, its faults, a published image).
USER_DOCUMENTS: list[type[BaseModel]] = [UpgradePolicy, ScaleSetSpec, FaultSpec, ImageReference]


@pytest.mark.parametrize(("model", "path", "document", "changed"), cases(USER_DOCUMENTS, written=False))
def test_a_user_document_refuses_an_unknown_field_by_its_path(model, path, document, changed):
    model.from_user(document)
    with pytest.raises(ValidationError) as err:
        model.from_user(changed)
    where = ".".join(str(part) for part in (*path, NEW_FIELD))
    assert describe_validation_error(err.value) == f"{where}: is not a known field"
