"""The base of every model: Azure's camelCase JSON on the wire, snake_case in Python."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_serializer
from pydantic.alias_generators import to_camel


class AzureModel(BaseModel):
    """camelCase aliases, accepted by name too; unknown fields are an error; None is omitted.

    Omitting None keeps documents the shape Azure prints (an upgrade with no error has
    no `error` key) and round-trips, since every optional field defaults to None.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
    )

    @model_serializer(mode="wrap")
    def _omit_none(self, handler: Any) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data

    def to_json(self) -> dict[str, Any]:
        """The JSON document, as Azure spells it."""
        return self.model_dump(mode="json")


class ViewModel(AzureModel):
    """A document read from a back end: fields it adds later are ignored, not refused."""

    model_config = ConfigDict(extra="ignore")


_DOCS_LINK = re.compile(r"\s*\[?\s*For further information visit https://errors\.pydantic\.dev/\S*\s*\]?")


def without_docs_link(text: str) -> str:
    """pydantic's text without its "For further information visit https://errors.pydantic.dev/…"."""
    return _DOCS_LINK.sub("", text)


def describe_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line per problem, each naming the field by its JSON path (never pydantic's links)."""
    lines = []
    for problem in err.errors(include_url=False):
        path = ".".join(str(part) for part in problem["loc"] if part != "__root__")
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        message = without_docs_link(problem["msg"].removeprefix("Value error, "))
        if problem["type"] == "extra_forbidden":
            message = "is not a known field"
        elif problem["type"] == "missing":
            message = "is required"
        lines.append(f"{path}: {message}" if path else message)
    return "\n".join(lines)
