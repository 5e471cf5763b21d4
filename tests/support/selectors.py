"""Kubernetes label selectors, field selectors and the JSONPath subset used by printer columns.

Only what tests and typical operator code send is supported:

* label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a``, ``!a``;
* field selectors: ``metadata.name=x``, ``metadata.namespace!=y`` and any dotted path, ``=``/``==``/``!=``;
* JSONPath: ``.a.b``, ``.a[0]``, ``.a[?(@.type=="Ready")].status`` (the printer-column subset).

A malformed selector raises :class:`SelectorError`, which the emulator turns into HTTP 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]


class SelectorError(ValueError):
    """A selector the emulator cannot parse (a real apiserver answers 400)."""


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside ``(...)`` of set-based terms."""
    terms: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    terms.append(current.strip())
    return [term for term in terms if term]


_SET_TERM = re.compile(r"^(?P<key>[^\s!=]+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)$")
_EQ_TERM = re.compile(r"^(?P<key>[^\s!=]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s]*)$")
_EXISTS_TERM = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)$")


def _label_term(term: str) -> Predicate:
    if match := _SET_TERM.match(term):
        key, op = match["key"], match["op"]
        values = {value.strip() for value in match["values"].split(",") if value.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQ_TERM.match(term):
        key, op, value = match["key"], match["op"], match["value"]
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS_TERM.match(term):
        key, negated = match["key"], bool(match["neg"])
        return lambda labels: (key in labels) != negated
    raise SelectorError(f"unable to parse requirement: {term!r}")


def label_selector(selector: str | None) -> Predicate:
    """A predicate over an object body for a ``labelSelector`` query parameter."""
    predicates = [_label_term(term) for term in _split_terms(selector or "")]

    def check(body: Mapping[str, Any]) -> bool:
        labels = (body.get("metadata") or {}).get("labels") or {}
        return all(predicate(labels) for predicate in predicates)

    return check


def _field_term(term: str) -> Predicate:
    match = _EQ_TERM.match(term)
    if match is None:
        raise SelectorError(f"invalid field selector: {term!r}")
    path, op, value = match["key"], match["op"], match["value"]
    keys = path.split(".")

    def check(body: Mapping[str, Any]) -> bool:
        current: Any = body
        for key in keys:
            current = current.get(key) if isinstance(current, Mapping) else None
        actual = (
            "" if current is None else str(current).lower() if isinstance(current, bool) else str(current)
        )
        return (actual == value) != (op == "!=")

    return check


def field_selector(selector: str | None) -> Predicate:
    """A predicate over an object body for a ``fieldSelector`` query parameter."""
    predicates = [_field_term(term) for term in _split_terms(selector or "")]
    return lambda body: all(predicate(body) for predicate in predicates)


_JSONPATH_TOKEN = re.compile(
    r"""\.(?P<key>[A-Za-z0-9_\-]+)"""
    r"""|\[(?P<index>-?\d+)\]"""
    r"""|\[\?\(@\.(?P<fkey>[A-Za-z0-9_\-.]+)\s*==\s*["'](?P<fvalue>[^"']*)["']\)\]"""
)


def jsonpath(body: Any, path: str) -> Any:
    """Evaluate a printer-column JSONPath; ``None`` if anything on the way is absent."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    path = path.removeprefix("$")
    position = 0
    current: Any = body
    while position < len(path):
        match = _JSONPATH_TOKEN.match(path, position)
        if match is None:
            raise SelectorError(f"unsupported JSONPath: {path!r}")
        position = match.end()
        if match["key"] is not None:
            current = current.get(match["key"]) if isinstance(current, Mapping) else None
        elif match["index"] is not None:
            index = int(match["index"])
            current = (
                current[index]
                if isinstance(current, list) and -len(current) <= index < len(current)
                else None
            )
        else:
            fkeys = match["fkey"].split(".")
            found = None
            for item in current if isinstance(current, list) else []:
                value: Any = item
                for fkey in fkeys:
                    value = value.get(fkey) if isinstance(value, Mapping) else None
                if value is not None and str(value) == match["fvalue"]:
                    found = item
                    break
            current = found
        if current is None:
            return None
    return current
