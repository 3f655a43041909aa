"""The rows a rollup fold hands to the sink: columns of ``rollups_input``, built in fold order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields


@dataclass(slots=True)
class FoldRows:
    """Column-oriented rows for ``rollups_input``: one per (keys, minute, paths).

    Summed values fill ``keys, minute, paths, values``. Distributions and gauges are rows of
    their own (one per keys, minute and path; ``paths``/``values`` empty) that also fill the
    ``KIND_COLUMNS``; when a flush has any, every row carries all columns (summed rows with
    the defaults), else only the first four are sent, exactly as before.
    """

    keys: list[tuple[str, ...]]
    minute: list[int]
    paths: list[tuple[str, ...]]
    values: list[list[float]]
    kind: list[int] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    sketch_keys: list[list[int]] = field(default_factory=list)
    sketch_counts: list[list[int]] = field(default_factory=list)
    stats: list[list[float]] = field(default_factory=list)
    vmin: list[float | None] = field(default_factory=list)
    vmax: list[float | None] = field(default_factory=list)
    last: list[tuple[int, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.minute)

    @property
    def has_kinds(self) -> bool:
        """True when some row is a distribution or a gauge (all columns are then filled)."""
        return bool(self.kind)

    def column_names(self) -> tuple[str, ...]:
        """The columns this insert sends."""
        return COLUMNS + KIND_COLUMNS if self.has_kinds else COLUMNS

    def columns(self) -> list[list]:
        """Columns in ``column_names()`` order."""
        return [getattr(self, name) for name in self.column_names()]

    def take(self, indices: list[int]) -> FoldRows:
        """The rows at ``indices``, in that order."""
        return FoldRows(
            **{
                f.name: [getattr(self, f.name)[i] for i in indices]
                if (f.name in COLUMNS or self.has_kinds)
                else []
                for f in fields(self)
            }
        )


COLUMNS = ("keys", "minute", "paths", "values")
KIND_COLUMNS = (
    "kind", "path", "sketch_keys", "sketch_counts", "stats", "vmin", "vmax", "last"
)  # fmt: skip
KIND_SUM, KIND_DIST, KIND_GAUGE = 0, 1, 2


def to_rows(
    keysets: list[tuple[str, ...]],
    shapes: list[tuple[str, ...]],
    acc: dict[tuple[int, int, int], list],
    dacc: dict[tuple[int, int, str], list],
    gacc: dict[tuple[int, int, str], list],
) -> FoldRows:
    """A fold's sums, distributions and gauges as rows, in fold order (deterministic per range).

    ClickHouse's ``rollups_expand`` view fans them out to every key, stored granularity and
    path in C++, which is where per-row work belongs.
    """
    rows = FoldRows([], [], [], [])
    for (ks, minute, sh), sums in acc.items():
        rows.keys.append(keysets[ks])
        rows.minute.append(minute)
        rows.paths.append(shapes[sh])
        rows.values.append(sums)  # ints and floats: the encoder writes Float64 as is
    if dacc or gacc:
        n = len(rows)
        rows.kind = [KIND_SUM] * n
        rows.path = [""] * n
        rows.sketch_keys = [[]] * n
        rows.sketch_counts = [[]] * n
        rows.stats = [[]] * n
        rows.vmin = [None] * n
        rows.vmax = [None] * n
        rows.last = [(0, 0.0)] * n
        dkeys = [sorted(e[5]) if len(e[5]) > 1 else list(e[5]) for e in dacc.values()]
        slots = [*dacc, *gacc]
        rows.keys += [keysets[ks] for ks, _, _ in slots]
        rows.minute += [minute for _, minute, _ in slots]
        rows.paths += [()] * len(slots)
        rows.values += [[]] * len(slots)
        rows.kind += [KIND_DIST] * len(dacc) + [KIND_GAUGE] * len(gacc)
        rows.path += [path for _, _, path in slots]
        rows.sketch_keys += dkeys + [[]] * len(gacc)
        rows.sketch_counts += [
            [e[5][k] for k in keys] for e, keys in zip(dacc.values(), dkeys, strict=True)
        ] + [[]] * len(gacc)
        rows.stats += [[float(e[0]), e[1], e[2]] for e in dacc.values()] + [[]] * len(gacc)
        rows.vmin += [e[3] for e in dacc.values()] + [e[1] for e in gacc.values()]
        rows.vmax += [e[4] for e in dacc.values()] + [e[2] for e in gacc.values()]
        rows.last += [(0, 0.0)] * len(dacc) + [e[0] for e in gacc.values()]
    return rows


def _sum_defaults(n: int) -> dict[str, list]:
    """The kind columns of ``n`` summed rows (what ``to_rows`` fills them with)."""
    return {
        "kind": [KIND_SUM] * n,
        "path": [""] * n,
        "sketch_keys": [[]] * n,
        "sketch_counts": [[]] * n,
        "stats": [[]] * n,
        "vmin": [None] * n,
        "vmax": [None] * n,
        "last": [(0, 0.0)] * n,
    }


def concat_rows(parts: Sequence[FoldRows]) -> FoldRows:
    """Several folds' rows as one insert, in order (a combined flush of many partitions).

    If any part holds distributions or gauges, the summed rows of the others get the kind
    columns' defaults, so every row carries every column.
    """
    out = FoldRows([], [], [], [])
    kinds = any(p.has_kinds for p in parts)
    for p in parts:
        for name in COLUMNS:
            getattr(out, name).extend(getattr(p, name))
        if not kinds:
            continue
        extra = (
            {name: getattr(p, name) for name in KIND_COLUMNS}
            if p.has_kinds
            else _sum_defaults(len(p))
        )
        for name, values in extra.items():
            getattr(out, name).extend(values)
    return out
