"""YAML config files as msgspec Structs, every problem mapped to its line.

Dashboards (``web/``) and monitors (``monitors/``) are both YAML files turned into typed
Structs whose errors must read ``file:line: reason``. The loader lives here, beside the other
schemas both sides already import, so neither imports the other (web/ must not depend on
monitors/, nor monitors/ on web/): one way to parse, convert and place an error.

    node, data = parse(text)                      # Invalid(line=...) on bad YAML
    try:
        spec = convert(data, Spec)                # Invalid(where=("widgets", 1, "top"))
    except Invalid as exc:
        line = line_of(node, exc.where)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi
import yaml

T = TypeVar("T")
Where = tuple[str | int, ...]
_AT = re.compile(r" - at `\$((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)`")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_PLAIN = (
    (re.compile(r"Object missing required field `([^`]+)`"), r"'\1' is required"),
    (re.compile(r"Object contains unknown field `([^`]+)`"), r"unknown field '\1'"),
)


class Invalid(Exception):
    """A config problem: its ``reason`` and ``where`` it is (keys and indexes into the
    document), or its ``line`` when only that is known (bad YAML)."""

    def __init__(self, reason: str, where: Where = (), line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.where = where
        self.line = line


def parse(text: str) -> tuple[yaml.Node | None, Any]:
    """The YAML node tree (for lines) and the plain data of ``text``."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise Invalid(f"YAML: {exc.problem or exc.context}", line=line) from None
    except yaml.YAMLError as exc:
        raise Invalid(f"YAML: {exc}") from None


def line_of(node: yaml.Node | None, where: Iterable[str | int]) -> int | None:
    """1-based line of what ``where`` names, as deep as it resolves: the line of a mapping's
    key (where the field is named), of a list's item, else of ``node`` itself."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for step in where:
        if isinstance(node, yaml.MappingNode) and isinstance(step, str):
            pair = next(((k, v) for k, v in node.value if k.value == step), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            if step >= len(node.value):
                break
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            break
    return line


def convert(data: Any, kind: type[T], where: Where = ()) -> T:
    """``data`` as a ``kind``; :class:`Invalid` naming the field (under ``where``) and why.
    An unknown field's ``where`` ends with that field, so its line is its own."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _AT.search(message)
        at = tuple(
            m.group(1) if m.group(1) else int(m.group(2))
            for m in _STEP.finditer(match.group(1) if match else "")
        )
        unknown = re.search(r"unknown field `([^`]+)`", message)
        reason = _explain(mi.type_info(kind), at, _AT.sub("", message))
        for pattern, plain in _PLAIN:
            reason = pattern.sub(plain, reason)
        reason = reason.replace("`", "'")
        if at:
            reason += f" (at {'.'.join(str(s) for s in at)})"
        raise Invalid(reason, (*where, *at, *([unknown.group(1)] if unknown else []))) from None


def _at(info: Any, step: str | int) -> list[Any]:
    """What ``step`` leads to from ``info`` (every member of a union that has it)."""
    if isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.UnionType):
        return [t for member in info.types for t in _at(member, step)]
    if isinstance(info, mi.StructType) and isinstance(step, str):
        if step == info.tag_field:
            return [info]  # the tag: its struct stands for it
        return [f.type for f in info.fields if f.encode_name == step]
    if isinstance(info, mi.ListType | mi.DictType):
        return [info.item_type if isinstance(info, mi.ListType) else info.value_type]
    return []


def _explain(info: Any, at: Where, message: str) -> str:
    """A plainer ``message`` from the type at ``at``: the allowed values of a choice or a tag,
    or the ``description`` a constrained type carries."""
    found = [info]
    for step in at:
        found = [t for f in found for t in _at(f, step)]
    found = [m for f in found for m in (f.types if isinstance(f, mi.UnionType) else [f])]
    value = re.match(r"Invalid (?:enum )?value (.+)$", message)
    if value and found and all(isinstance(f, mi.StructType) for f in found):
        return f"{value.group(1)} is not one of {', '.join(sorted(f.tag for f in found))}"
    if value and found and isinstance(found[0], mi.LiteralType):
        return f"{value.group(1)} is not one of {', '.join(map(str, found[0].values))}"
    described = [f for f in found if isinstance(f, mi.Metadata) and f.extra_json_schema]
    if described:
        return f"must be {described[0].extra_json_schema.get('description', message)}"
    return message
