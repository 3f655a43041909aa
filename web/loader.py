"""Load dashboards from YAML files: each broken file becomes a :class:`LoadError` naming its
file, line and reason, and the others still load."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import yaml

from tally.read.errors import ReadError
from tally.read.expression import parse
from tally.web.model import GRANULARITIES, RANGES, Dashboard, LoadError, Segment, Widget

BUILTIN_DIR = Path(__file__).parent / "builtin"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_AT = re.compile(r" - at `\$((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)`")


class _Invalid(Exception):
    def __init__(self, reason: str, where: tuple[str | int, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.where = where


@dataclass(frozen=True)
class Loaded:
    """Dashboards by name (built-ins first, user files override), and the files that failed."""

    dashboards: dict[str, Dashboard] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)


def _line(node: yaml.Node | None, where: Iterable[str | int]) -> int | None:
    """1-based line of the node at ``where`` (as deep as the path resolves)."""
    if node is None:
        return None
    for step in where:
        child = None
        if isinstance(node, yaml.MappingNode) and isinstance(step, str):
            child = next((v for k, v in node.value if k.value == step), None)
            if child is None:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            if step >= len(node.value):
                break
            child = node.value[step]
        else:
            break
        node = child
    return node.start_mark.line + 1


def _steps(path: str) -> tuple[str | int, ...]:
    """``.widgets[0].rows[1].path`` -> ``("widgets", 0, "rows", 1, "path")``."""
    return tuple(
        m.group(1) if m.group(1) else int(m.group(2))
        for m in re.finditer(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", path)
    )


def _check_widget(w: Widget, i: int) -> None:
    at = ("widgets", i)
    if not 1 <= w.span <= 12:
        raise _Invalid("span must be 1..12 (columns of 12)", (*at, "span"))
    if w.type == "text":
        if not w.text:
            raise _Invalid("a text widget needs `text`", at)
        return
    if w.type == "distribution":
        if not w.path:
            raise _Invalid("a distribution widget needs `path` (a distribution path)", at)
        return
    if not w.rows:
        raise _Invalid(f"a {w.type} widget needs `rows` (path or expression rows)", at)
    for j, row in enumerate(w.rows):
        where = (*at, "rows", j)
        if (row.path is None) == (row.expression is None):
            raise _Invalid("a row has exactly one of `path` or `expression`", where)
        if row.expression is not None:
            try:
                parse(row.expression)
            except ReadError as exc:
                raise _Invalid(f"expression: {exc.reason}", (*where, "expression")) from None
        elif "*" in (row.path or "") and w.type == "kpi":
            raise _Invalid("a KPI row cannot be a wildcard (use a category widget)", where)
        if w.type == "gauge" and (row.path is None or "*" in row.path):
            raise _Invalid("a gauge row is one gauge path (no expression, no wildcard)", where)


def check(d: Dashboard) -> Dashboard:
    """Validate what types cannot say; fill segments the key names but the file does not."""
    if d.range not in RANGES:
        raise _Invalid(f"range must be one of {', '.join(RANGES)}", ("range",))
    if d.granularity not in GRANULARITIES:
        raise _Invalid(f"granularity must be one of {', '.join(GRANULARITIES)}", ("granularity",))
    names = d.placeholders()
    for name in d.segments:
        if name not in names:
            raise _Invalid(f"segment {name!r} is not a placeholder of the key", ("segments", name))
    if "*" in d.key:
        raise _Invalid("the key cannot hold '*': use a {segment} placeholder", ("key",))
    for i, w in enumerate(d.widgets):
        _check_widget(w, i)
        if w.expected_per and w.expected_per not in GRANULARITIES[1:]:
            where = ("widgets", i, "expected_per")
            raise _Invalid(f"expected_per must be one of {', '.join(GRANULARITIES[1:])}", where)
        if w.drill is not None and w.drill not in names:
            raise _Invalid(f"drill {w.drill!r} is not a placeholder of the key", ("widgets", i))
    segments = {n: d.segments.get(n, Segment(label=n)) for n in names}
    return msgspec.structs.replace(d, segments=segments)


def load_text(text: str, file: str, name: str, builtin: bool = False) -> Dashboard | LoadError:
    """One dashboard from YAML ``text``, or the error naming ``file``, line and reason."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        return LoadError(file, line, f"YAML: {exc.problem or exc.context}")
    except yaml.YAMLError as exc:
        return LoadError(file, None, f"YAML: {exc}")
    if not isinstance(data, dict):
        reason = "a dashboard file is a mapping (title, key, widgets)"
        return LoadError(file, _line(node, ()), reason)
    try:
        dashboard = msgspec.convert({**data, "name": name, "builtin": builtin}, Dashboard)
        return check(dashboard)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _AT.search(message)
        where = _steps(match.group(1)) if match else ()
        unknown = re.search(r"unknown field `([^`]+)`", message)
        line = _line(node, (*where, unknown.group(1)) if unknown else where)
        reason = _AT.sub("", message).replace("`", "'")
        if where:
            reason += f" (at {'.'.join(str(s) for s in where)})"
        return LoadError(file, line, reason)
    except _Invalid as exc:
        return LoadError(file, _line(node, exc.where), exc.reason)


def load_dir(directory: Path, builtin: bool = False) -> Loaded:
    """Every ``*.yaml``/``*.yml`` file of ``directory``, sorted by name."""
    loaded = Loaded()
    if not directory.is_dir():
        if not builtin:
            loaded.errors.append(LoadError(str(directory), None, "no such directory"))
        return loaded
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    for file in files:
        name = file.stem.lower()
        if not NAME.match(name):
            loaded.errors.append(
                LoadError(str(file), None, "file name must be a-z, 0-9, '-' or '_' (it is the URL)")
            )
            continue
        try:
            data = file.read_bytes()
            text = data.decode("utf-8")
        except OSError as exc:
            loaded.errors.append(LoadError(str(file), None, f"cannot read: {exc.strerror}"))
            continue
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            reason = f"not UTF-8: byte 0x{data[exc.start]:02x} (save it as UTF-8)"
            loaded.errors.append(LoadError(str(file), line, reason))
            continue
        result = load_text(text, str(file), name, builtin)
        if isinstance(result, LoadError):
            loaded.errors.append(result)
        else:
            loaded.dashboards[name] = result
    return loaded


def load_all(user_dir: Path | None) -> Loaded:
    """Built-in dashboards, then the user's (a user file with a built-in's name replaces it)."""
    builtins = load_dir(BUILTIN_DIR, builtin=True)
    user = load_dir(user_dir) if user_dir is not None else Loaded()
    merged = {**builtins.dashboards, **user.dashboards}
    ordered = dict(sorted(merged.items(), key=lambda item: (item[1].order, item[0])))
    return Loaded(ordered, [*builtins.errors, *user.errors])


def _signature(directory: Path | None) -> tuple[tuple[str, int, int], ...]:
    """Name, mtime and size of each YAML file of ``directory`` (one stat each)."""
    if directory is None or not directory.is_dir():
        return ()
    found = []
    for file in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            st = file.stat()
        except OSError:
            continue
        found.append((file.name, st.st_mtime_ns, st.st_size))
    return tuple(found)


class Catalog:
    """The dashboards of ``user_dir`` (and the built-ins), re-read when a file is added,
    removed or changed (its mtime or size): a stat per file on each :meth:`current`, no
    restart to pick up an edit."""

    def __init__(self, user_dir: Path | None) -> None:
        self.user_dir = user_dir
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self._loaded = Loaded()

    def current(self) -> Loaded:
        """The loaded dashboards, reloaded first if the directory changed since last time."""
        seen = _signature(self.user_dir)
        if seen != self._seen:
            self._loaded, self._seen = load_all(self.user_dir), seen
        return self._loaded
