"""Value objects for the rule engine, without ``dataclasses``.

The inetd fast path imports the engine for every connection, and ``import dataclasses`` costs
~12 ms there (it pulls in inspect, ast, dis and tokenize) -- a quarter of a whole fast-path
connection. A :class:`Record` subclass names its fields in ``_fields`` (and ``__slots__``),
sets them through ``Record.__init__`` from its own typed ``__init__``, and gets what
``@dataclass(frozen=True)`` gave: equality and hash over the fields, a repr, ``replace``, and
read-only attributes.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds to import; annotations are strings here
if TYPE_CHECKING:
    from typing import Self

__all__ = ["Record"]


class Record:
    """Fields named by the subclass's ``_fields``; read-only once made."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def __init__(self, *values: object) -> None:
        for name, value in zip(self._fields, values, strict=True):
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def replace(self, **changes: object) -> Self:
        """A copy with ``changes``, as ``dataclasses.replace``."""
        values = {name: getattr(self, name) for name in self._fields}
        values.update(changes)
        return type(self)(**values)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of {type(self).__name__}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"
