"""A tiny name -> implementation registry used for policies, workloads and reward functions."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from disagg_gym.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to classes or factories; ``@REG.register("name")`` next to the class.

    Args:
        kind: What is registered (used in error messages), e.g. ``"policy"``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, tuple[str, str]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; duplicate names are an error."""
        if not isinstance(name, str) or not name:  # a bare @REG.register replaced the class silently
            raise TypeError(f"{self.kind} registry: register needs a name, as in @REGISTRY.register(\"my_name\") "
                            f"(got {name!r})")

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def alias(self, old: str, new: str, message: str) -> None:
        """Keeps ``old`` as a deprecated name of ``new``: ``get(old)`` warns with ``message``
        (a ``FutureWarning``, shown to users) and returns ``new``'s entry; ``names()`` omits it.
        """
        if old in self._items or old in self._aliases:
            raise ValueError(f"{self.kind} {old!r} is already registered")
        self._aliases[old] = (new, message)

    def canonical(self, name: str) -> str:
        """``name``, or the current name a deprecated alias stands for (no warning)."""
        hit = self._aliases.get(name)
        return hit[0] if hit is not None else name

    def get(self, name: str) -> T:
        """Returns the entry for ``name`` or raises ``UserError`` listing the valid names."""
        hit = self._aliases.get(name)
        if hit is not None:
            import warnings

            warnings.warn(hit[1], FutureWarning, stacklevel=2)
            name = hit[0]
        try:
            return self._items[name]
        except KeyError:
            raise UserError(
                f"unknown {self.kind} {name!r}; expected one of: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def by_name(items: Iterable[Any], kind: str) -> Mapping[str, Any]:
    """A read-only ``{item.name: item}`` of a fixed catalog; a repeated name is an error (a
    dict comprehension let a second entry replace a built-in one silently).
    """
    out: dict[str, Any] = {}
    for item in items:
        if item.name in out:
            raise ValueError(f"{kind} {item.name!r} is defined twice")
        out[item.name] = item
    return MappingProxyType(out)
