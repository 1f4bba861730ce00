"""The base of every model: Azure's camelCase JSON on the wire, snake_case in Python."""

from __future__ import annotations

import re
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_serializer
from pydantic.alias_generators import to_camel


class AzureModel(BaseModel):
    """camelCase aliases, accepted by name too; unknown fields ignored; None is omitted.

    Unknown fields are ignored at every depth because these documents cross Temporal's
    boundaries (workflow and activity inputs and results, signals, updates, queries, memos):
    during a deploy an older worker reads what a newer one wrote. What a user writes is
    validated with `from_user`, which refuses them.

    Omitting None keeps documents the shape Azure prints (an upgrade with no error has
    no `error` key) and round-trips, since every optional field defaults to None.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
    )

    @classmethod
    def from_user(cls, document: Any) -> Self:
        """A document a user wrote (a `--policy` or `--file`, an emulator admin request): an
        unknown field at any depth is a typo, refused by its path ("is not a known field")."""
        return cls.model_validate(document, extra="forbid")

    @model_serializer(mode="wrap")
    def _omit_none(self, handler: Any) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data

    def to_json(self) -> dict[str, Any]:
        """The JSON document, as Azure spells it."""
        return self.model_dump(mode="json")


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
