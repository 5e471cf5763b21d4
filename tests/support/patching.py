"""Patch semantics of the emulator: JSON merge patch, a strategic-merge subset and JSON patch.

* ``application/merge-patch+json`` (RFC 7386): dicts merge, ``null`` deletes, lists are replaced.
* ``application/strategic-merge-patch+json`` and ``application/apply-patch+yaml``: as a merge
  patch, except that lists of dicts keyed by ``name`` (containers, env, ports, volumes) or ``uid``
  (ownerReferences) are merged by that key, ``$patch: delete`` removes an element and the
  ``$setElementOrder/…``/``$retainKeys``-style directives are dropped.
* ``application/json-patch+json`` (RFC 6902): applied with ``jsonpatch``; a failed ``test`` or a bad
  pointer is :class:`PatchConflict` (the emulator answers 422, as kopf expects).
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"
MERGE_KEYS = ("name", "uid")


class PatchConflict(ValueError):
    """A JSON patch that cannot be applied (failed ``test``, missing path)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; never mutates its arguments."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_key(items: list[Any]) -> str | None:
    for key in MERGE_KEYS:
        if items and all(isinstance(item, dict) and key in item for item in items):
            return key
    return None


def _strategic_list(target: Any, patch: list[Any]) -> list[Any]:
    patch_items = [item for item in patch if not (isinstance(item, dict) and item.get("$patch") == "replace")]
    key = _merge_key([item for item in patch_items if isinstance(item, dict)]) if patch_items else None
    if key is None or not isinstance(target, list) or _merge_key(target) != key:
        return [strip_directives(item) for item in patch_items if not _is_delete(item)]
    result = [copy.deepcopy(item) for item in target]
    for item in patch_items:
        index = next((i for i, old in enumerate(result) if old.get(key) == item.get(key)), None)
        if _is_delete(item):
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strip_directives(item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def _is_delete(item: Any) -> bool:
    return isinstance(item, dict) and item.get("$patch") == "delete"


def strip_directives(value: Any) -> Any:
    """Drop the ``$…`` strategic-merge directives from a value."""
    if isinstance(value, dict):
        return {k: strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [strip_directives(v) for v in value]
    return value


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic-merge subset good enough for kubectl and typical operator patches."""
    if isinstance(patch, list):
        return _strategic_list(target, patch)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return strip_directives(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def json_patch(target: dict[str, Any], ops: list[Any]) -> dict[str, Any]:
    """RFC 6902 JSON patch; failures become :class:`PatchConflict`."""
    try:
        result = jsonpatch.apply_patch(copy.deepcopy(target), ops, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, KeyError, IndexError) as exc:
        raise PatchConflict(str(exc) or type(exc).__name__) from exc
    if not isinstance(result, dict):
        raise PatchConflict("a JSON patch must leave an object")
    return result


def apply(target: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """Apply a patch of the given Content-Type (defaulting to a merge patch for dict bodies)."""
    if content_type == JSON_PATCH or isinstance(patch, list):
        if not isinstance(patch, list):
            raise PatchConflict("a JSON patch must be a list of operations")
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise PatchConflict("a merge patch must be an object")
    if content_type in (STRATEGIC, APPLY):
        result = strategic_merge_patch(target, patch)
    else:
        result = merge_patch(target, patch)
    assert isinstance(result, dict)
    return result
