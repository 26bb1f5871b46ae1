"""The status grid's cells across levels, counted set-at-a-time where addresses have several
sets of keys (a variable saved per subject beside others per session, or one at both).

The grid (`status._grid`, the reference) has a row per address that no finer address
extends, and in each row a variable's cell is its record at the finest of its levels that
the row's keys cover and that has one there, as `for_each` finds an input; else "missing"
at the finest covered level. Counts are of distinct cells: a subject's value serving both
sessions is one cell; a coarser value that every row finds a finer one beside is in none.

Here the same rules run on groups of addresses the index counts in one query: the same keys,
the same variables present, the same values of the keys a coarser level has. Every address
of a group gets the same cells, so a million addresses are a few hundred groups (a subject's
sessions and trials). Only the first missing cells shown are read address by address.
(The per-record grid took 28 s at 1M refs for one value saved at the subject level.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from scistack.index import key_of
from scistack.index.fold import address_key_order


@dataclass(frozen=True, slots=True)
class LevelCells:
    """One variable's cells as the grid counts them: how many of its records rows show; the
    address keys of those no row shows (a coarser value with a finer one beside it in every
    row); how many cells are missing, and the first of them (address keys, in `address_order`
    of the schema keys, as the grid lists its rows)."""

    used: int
    hidden: set[str]
    missing: int
    first_missing: list[str]


Level = frozenset  # the schema keys of an address


def cells_across_levels(judging: Any, names: list[str], variables: list[str], levels: set[Level],
                        limit: int) -> dict[str, LevelCells] | None:
    """`LevelCells` of each of `variables` (each with a live record; their addresses make the
    rows), `levels` being the sets of keys their addresses have (the first `limit` missing
    cells listed, -1: all); None where the index cannot say (the grid answers then)."""
    projected = _projected_keys(names, levels)
    groups = judging.address_groups(names, projected, variables)
    if groups is None:
        return None
    found_levels = {_level(names, g[0]) for g in groups}
    if not set(_projected_keys(names, found_levels)) <= set(projected):
        return None  # (`levels` missed one: the grid answers)
    bits = {var: judging.bit(var) for var in variables}
    width = len(projected)
    rows = [_Group(g[:2 + width], _level(names, g[0]), dict(zip(projected, g[2:2 + width])), g[2 + width],
                   g[3 + width]) for g in groups]
    single = {(g.level, _texts(g.level, g.texts, names)): g for g in rows if g.level <= set(projected)}
    coarser = {g.level: [level for level in found_levels if level < g.level] for g in rows}
    for g in rows:  # an address a finer one extends is no row
        for level in coarser[g.level]:
            hit = single.get((level, _texts(level, g.texts, names)))
            if hit is not None:
                hit.extended = True
    out: dict[str, LevelCells] = {}
    for var, bit in bits.items():
        mine = sorted({g.level for g in rows if g.mask & bit}, key=lambda lv: (-len(lv), _order(names, lv)))
        used, found, missing_at, lacking = 0, set(), set(), 0
        whole: set[tuple] = set()  # groups each of whose addresses is a missing cell of its own
        for g in rows:
            if g.extended:
                continue
            covered = [level for level in mine if level <= g.level]  # finest first
            if not covered:
                continue  # none of its levels is in this row: no cell
            if g.mask & bit:
                used += g.count
                continue
            first = None
            for level in covered:
                if level == g.level:  # (the address itself: the variable has none there)
                    first = first or "row"
                    continue
                cell = (level, _texts(level, g.texts, names))
                hit = single.get(cell)
                if hit is not None and hit.mask & bit:
                    found.add(cell)
                    break
                first = first or cell
            else:
                if first == "row":
                    lacking += g.count
                    whole.add(g.raw)
                else:
                    missing_at.add(first)
        hidden = {g.first for g in rows if g.extended and g.mask & bit and (g.level, _texts(g.level, g.texts, names))
                  not in found}
        coarse_missing = [key_of(_address(names, level, texts)) for level, texts in missing_at]
        lacking_first = _first_lacking(judging, var, names, projected, variables, whole, limit)
        listed = sorted(coarse_missing + lacking_first, key=lambda addr: address_key_order(addr, names))
        out[var] = LevelCells(used + len(found), hidden, lacking + len(coarse_missing),
                              listed if limit < 0 else listed[:limit])
    return out


class _Group:
    """Addresses of one level, the same variables and the same values of the projected keys."""

    __slots__ = ("raw", "level", "mask", "texts", "count", "first", "extended")

    def __init__(self, raw: tuple, level: Level, texts: dict[str, str | None], count: int, first: str) -> None:
        self.raw, self.level, self.mask, self.texts = raw, level, raw[1], texts  # raw: as the index groups
        self.count, self.first, self.extended = count, first, False


def _first_lacking(judging: Any, var: str, names: list[str], projected: list[str], variables: list[str],
                   whole: set[tuple], limit: int) -> list[str]:
    """The first `limit` (-1: all) addresses of the `whole` groups, in `address_order`: read
    from the addresses `var` lacks, in that order, until found."""
    if not whole or limit == 0:
        return []
    found: list[str] = []
    for addr, *raw in judging.addresses_lacking(var, names, projected, variables):
        if tuple(raw[:-1]) in whole:
            found.append(addr)
            if len(found) == limit:
                break
    return found


def _level(names: list[str], bits: int) -> Level:
    return frozenset(name for i, name in enumerate(names) if bits >> i & 1)


def _order(names: list[str], level: Level) -> tuple[int, ...]:
    return tuple(sorted(names.index(name) for name in level))


def _projected_keys(names: list[str], levels: set[Level]) -> list[str]:
    """The keys of every level coarser than another (in schema order): what a row is
    projected onto."""
    coarse = set().union(*(level for level in levels if any(level < other for other in levels)))
    return [name for name in names if name in coarse]


def _texts(level: Level, texts: dict[str, str | None], names: list[str]) -> tuple:
    return tuple(texts[name] for name in names if name in level)


def _address(names: list[str], level: Level, texts: tuple) -> dict[str, Any]:
    return {name: json.loads(text) for name, text in zip([n for n in names if n in level], texts)}
