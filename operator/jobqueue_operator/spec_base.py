"""The base of every section of the JobQueue spec (``spec``, ``flow_spec``): camelCase on the wire,
snake_case in Python, strict, frozen, unknown fields refused. A module of its own so that the
sections kept outside ``spec`` share it without importing ``spec``; with the optional section and
the reference to a Secret's key, which ``spec`` and ``redis_spec`` use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class KubeModel(BaseModel):
    """Base of the resource's sections: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=True
    )


def section(model: type[KubeModel], description: str) -> Any:
    """An optional section whose fields all have defaults; ``default: {}`` lets the API server fill them."""
    return Field(default_factory=model, description=description, json_schema_extra={"default": {}})


class SecretKeyRef(KubeModel):
    """One key of a Secret in the JobQueue's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(min_length=1, max_length=253, description="Key inside the Secret's data.")
