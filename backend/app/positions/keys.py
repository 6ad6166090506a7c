"""Positions: the keys that order a list's tasks, and a user's lists, by plain string order.

A key is a fractional index (the `fractional-indexing` package, base 62): there is always a key
between two others, so a move writes one row. Keys are compared by code point, as `COLLATE "C"`
and every client's string comparison do.

Where keys come from:
- an item added at the end (a create, a restore, a move to the end) gets ``append_key`` of its
  change number, in the database's change trigger (migration 0006). Change numbers only grow,
  so the key sorts after every key in the list, and appends take no lock on the list.
- a move between two items gets a key between their keys, computed here under the list's lock
  (the repositories). A computed key is always below an existing key, hence below every future
  append. It may be a bare integer key (between K99 and K101 lies K100), but never an append's
  key still to commit: the owner's changes take their numbers one at a time under the owner's
  change lock (changes/models.py), so when K101 has committed, number 100 has committed or
  rolled back, and the list's keys only ever come from its owner's changes.
- when a computed key would be longer than ``REBALANCE_ABOVE``, ``respace`` spreads a window
  of the neighbours out again (see there), so keys stay short without renumbering the list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fractional_indexing import (  # type: ignore[import-untyped]
    BASE_62_DIGITS,
    generate_key_between,
    generate_n_keys_between,
)

# The column's size; no key the server writes comes near it (REBALANCE_ABOVE, and append keys
# of at most 12 characters for a 64-bit change number).
POSITION_MAX_LENGTH = 32
# A computed key longer than this makes the move spread its neighbours out instead.
REBALANCE_ABOVE = 12
# The smallest window respaced: this many neighbours on each side of the gap, doubled until the
# window's new keys are short.
FIRST_WINDOW = 8
# Respaced keys aim at this length, so the window leaves room for many moves before the next.
RESPACED_LENGTH = 8
_DIGITS: str = BASE_62_DIGITS  # "0-9A-Za-z": ascending in code point order


def append_key(change_seq: int) -> str:
    """The key of an item appended by the change numbered ``change_seq`` (what the database's
    position_key function computes): the base-62 number after a head letter for its length,
    the integer keys of fractional indexing."""
    if change_seq < 0:
        raise ValueError("change numbers are positive")
    digits = ""
    number = change_seq
    while True:
        number, digit = divmod(number, 62)
        digits = _DIGITS[digit] + digits
        if number == 0:
            break
    return chr(ord("a") + len(digits) - 1) + digits


def key_between(before: str | None, after: str) -> str:
    """A key strictly between ``before`` (None: the start of the list) and ``after``."""
    return str(generate_key_between(before, after))


@dataclass(frozen=True, slots=True)
class Respacing:
    """The moved item's key, and the new keys of the neighbours that make room for it (by
    their index in the list's keys)."""

    moved: str
    neighbours: dict[int, str]


def respace(keys: Sequence[str], gap: int) -> Respacing:
    """Spread out the items around ``gap`` (the index of the item the moved one goes before, in
    ``keys``: the list's keys in order, without the moved item) so that the moved item gets a
    short key. The window grows from FIRST_WINDOW items on each side until its new keys, spaced
    evenly between the keys just outside it, are at most RESPACED_LENGTH long. The list's last
    item never moves: a key above it could collide with a future append."""
    if not 0 <= gap < len(keys):
        raise ValueError("the gap must be before an existing item")
    last = len(keys) - 1
    width = FIRST_WINDOW
    while True:
        start = max(gap - width, 0)
        end = min(gap + width, last)  # keys[end] bounds the window and keeps its key
        lower = keys[start - 1] if start > 0 else None
        # The window's items and the moved one, evenly spread.
        fresh: list[str] = generate_n_keys_between(lower, keys[end], end - start + 1)
        if max(map(len, fresh)) <= RESPACED_LENGTH or (start == 0 and end == last):
            break
        width *= 2
    moved = fresh.pop(gap - start)
    neighbours = {
        index: key
        for index, key in zip(range(start, end), fresh, strict=True)
        if key != keys[index]
    }
    return Respacing(moved=moved, neighbours=neighbours)
