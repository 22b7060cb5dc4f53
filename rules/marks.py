"""Map a validation location (`rules[0].when.servicetrade.entity`) to the deepest YAML node that exists."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from rules.conditions import Loc


def locate(root: Any, loc: Loc) -> tuple[int, int, Loc]:
    """(line, col) 1-based of the deepest existing node on `loc`, and the path to report.

    Parts that are not in the YAML are discriminator tags and are dropped, except the last,
    which is a missing key and is kept so the message names it.
    """
    node, line, col, path = root, 0, 0, []
    for i, part in enumerate(loc):
        if isinstance(node, CommentedMap) and part in node:
            line, col = _key_mark(node, part) or (line, col)
            node = node[part]
            path.append(part)
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, col = node.lc.item(part)
            node = node[part]
            path.append(part)
        elif isinstance(part, int) and not isinstance(node, list):
            continue  # a scalar that validation wrapped into a one-item list
        elif i == len(loc) - 1:
            path.append(part)
        else:
            continue
    return line + 1, col + 1, tuple(path)


def _key_mark(node: CommentedMap, key: Any) -> tuple[int, int] | None:
    """Where `key` is written; keys merged in with `<<: *anchor` are found at the anchor."""
    try:
        line, col = node.lc.key(key)
        return line, col
    except KeyError:
        pass
    # ruamel's merge list has held (position, map) pairs in some versions and bare maps in others.
    for item in getattr(node, "merge", None) or ():
        source = item[1] if isinstance(item, tuple) else item
        if isinstance(source, CommentedMap) and key in source:
            return _key_mark(source, key)
    return None


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def field_keys(model: type[BaseModel]) -> dict[str, Any]:
    """The keys a model accepts in YAML (aliases where set) and the annotation of each."""
    return {info.alias or name: info.annotation for name, info in model.model_fields.items()}


def keys_at(root: type[BaseModel], loc: Loc) -> list[str]:
    """The keys allowed in the mapping at `loc`, for a did-you-mean on an unknown key."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if origin in (typing.Union, typing.Optional) or str(origin) == "<class 'types.UnionType'>":
            members = [a for a in typing.get_args(current) if isinstance(_unwrap(a), type)]
            models = [_unwrap(a) for a in members if issubclass(_unwrap(a), BaseModel)]
            lists = [a for a in typing.get_args(current) if typing.get_origin(_unwrap(a)) is list]
            current = models[0] if models else (lists[0] if lists else current)
            current = _unwrap(current)
            origin = typing.get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            keys = field_keys(current)
            if part in keys:
                current = keys[part]
            continue  # a discriminator tag
        if origin is list and isinstance(part, int):
            current = typing.get_args(current)[0]
        elif origin is dict:
            current = typing.get_args(current)[1]
        else:
            return []
    current = _unwrap(current)
    if typing.get_origin(current) is not None:
        models = [_unwrap(a) for a in typing.get_args(current)]
        current = next((m for m in models if isinstance(m, type) and issubclass(m, BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(field_keys(current))
    return []
