"""Strict loading of frozen config dataclasses from YAML/dicts, with one-line errors.

Every config component is a ``@dataclass(frozen=True, slots=True)``. ``from_dict`` builds one
from plain data and rejects unknown keys, wrong types and out-of-range values with a
``ConfigError`` whose message names the source file, the dotted key, the bad value and what
was expected. Range checks are declared next to the field::

    rate_per_s: float = field(default=1.0, metadata=spec("arrival rate", gt=0))
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from disagg_gym.errors import UserError

T = TypeVar("T")


class ConfigError(UserError):
    """A user configuration problem; ``str(err)`` is one line fit for a CLI."""


def spec(
    help: str,
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[Any, ...] | None = None,
) -> dict[str, Any]:
    """Field metadata: a help string plus optional numeric bounds or allowed values."""
    return {"help": help, "gt": gt, "ge": ge, "le": le, "lt": lt, "choices": choices}


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _err(source: str, key: str, problem: str, value: Any = dataclasses.MISSING) -> ConfigError:
    where = f"{source}: " if source else ""
    got = "" if value is dataclasses.MISSING else f" (got {_fmt(value)})"
    return ConfigError(f"{where}key '{key}': {problem}{got}")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (list, tuple):
        return "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise _err(source, key, f"expected {_type_name(tp)}", value)
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _err(source, key, f"expected {_type_name(tp)}", value)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key, source)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise _err(source, key, f"expected {_type_name(tp)}", value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if value is None:  # `workload:` with nothing under it: not silently the defaults
            raise _err(source, key, "expected a mapping (an empty section; write {} for its defaults)", value)
        return from_dict(tp, value, source=source, prefix=key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in tp)
            raise _err(source, key, f"expected one of {allowed}", value) from None
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _err(source, key, "expected a list", value)
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise _err(source, key, f"expected a list of {len(args)} items", value)
            return tuple(_convert(a, v, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        return tuple(_convert(item, v, f"{key}[{i}]", source) for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _err(source, key, "expected a mapping", value)
        args = typing.get_args(tp)
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(vt, v, f"{key}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise _err(source, key, "expected true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if not (isinstance(value, float) and value.is_integer()):
                raise _err(source, key, "expected an integer", value)
        if not -(2**63) <= value < 2**63:  # counts and sizes become numpy int64 in the simulator
            raise _err(source, key, "expected an integer that fits in 64 bits", value)
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _err(source, key, "expected a number", value)
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise _err(source, key, "expected a finite number", value)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise _err(source, key, "expected a string", value)
        return value
    return value


def _check_bounds(meta: Mapping[str, Any], value: Any, key: str, source: str) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise _err(source, key, "expected one of " + ", ".join(repr(c) for c in choices), value)
    for name, ok, text in (
        ("gt", lambda v, b: v > b, "> {}"),
        ("ge", lambda v, b: v >= b, ">= {}"),
        ("lt", lambda v, b: v < b, "< {}"),
        ("le", lambda v, b: v <= b, "<= {}"),
    ):
        bound = meta.get(name)
        if bound is not None and isinstance(value, (int, float)) and not ok(value, bound):
            raise _err(source, key, "expected a value " + text.format(bound), value)


def from_dict(cls: type[T], data: Any, *, source: str = "", prefix: str = "") -> T:
    """Builds dataclass ``cls`` from ``data``, strictly.

    Args:
        cls: A dataclass type.
        data: A mapping of field names to values (nested mappings for nested dataclasses).
        source: The file (or other origin) named in error messages.
        prefix: Dotted key of ``data`` within the whole config, for error messages.

    Raises:
        ConfigError: unknown or missing keys, wrong types, values out of range.
    """
    here = prefix or "<root>"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise _err(source, here, "expected a mapping", data)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise _err(source, key, f"unknown key; expected one of: {', '.join(fields)}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _err(source, key, "missing required key")
            continue
        value = _convert(hints[name], data[name], key, source)
        _check_bounds(f.metadata, value, key, source)
        kwargs[name] = value
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise _err(source, here, str(exc)) from None
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError:
            raise
        except ValueError as exc:
            msg = str(exc)
            if msg.startswith("key '"):  # "key 'sub.key': problem (got x)" relative to this object
                rel = msg[len("key '"):]
                full = f"{prefix}.{rel}" if prefix else rel
                raise ConfigError(f"{source}: key '{full}" if source else f"key '{full}") from None
            raise _err(source, here, msg) from None
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data view of a config dataclass (for saving the resolved config)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def parse_override(text: str) -> tuple[str, Any]:
    """Parses ``dotted.key=value`` (value as YAML) into ``(key, value)``."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. workload.rate_per_s=30")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = load_yaml_text(raw)
    except (yaml.YAMLError, ConfigError):
        value = raw
    return key, value


def _is_dist(value: Any) -> bool:
    return isinstance(value, Mapping) and ("dist" in value or "choice" in value)


def deep_merge(base: Any, over: Any) -> Any:
    """``over`` merged into a deep copy of ``base``: mappings merge key by key, recursively;
    anything else (scalars, lists, distribution nodes) replaces the value there.
    """
    import copy

    if not isinstance(over, Mapping) or not isinstance(base, Mapping) or _is_dist(over) or _is_dist(base):
        return copy.deepcopy(over)
    out = {k: copy.deepcopy(v) for k, v in base.items()}
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if k in out else copy.deepcopy(v)
    return out


def apply_overrides(
    data: dict[str, Any], overrides: Mapping[str, Any], *, merge_mappings: bool = False
) -> dict[str, Any]:
    """Returns a deep copy of ``data`` with dotted-key overrides applied.

    Args:
        data: Plain config data.
        overrides: ``{"dotted.key": value}``.
        merge_mappings: A mapping value is deep-merged into the mapping already at its key
            (``{"env": {"reward": {"energy_kj": -0.1}}}`` keeps the other env keys) instead of
            replacing it.
    """
    import copy

    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        if not isinstance(dotted, str) or not dotted:
            raise ConfigError(f"override key {dotted!r}: expected a non-empty string")
        path = _override_path(dotted)
        node: Any = out
        for seg, nxt_seg in zip(path[:-1], path[1:]):
            if isinstance(seg, int):
                nxt = node[seg]  # _step checked the index
            else:
                nxt = node.get(seg)
                if nxt is None and not isinstance(nxt_seg, int):
                    nxt = node[seg] = {}
            node = _step(dotted, seg, nxt, nxt_seg)
        last = path[-1]
        old = node[last] if isinstance(last, int) else node.get(last)
        node[last] = deep_merge(old, value) if merge_mappings and isinstance(old, Mapping) else value
    return out


#: One segment of a dotted override key: a name, optionally followed by list indices (``groups[0]``).
_SEGMENT = re.compile(r"([^\[\]]+)((?:\[[0-9]+\])*)")


def _override_path(dotted: str) -> list[str | int]:
    """``"cluster.groups[0].count"`` -> ``["cluster", "groups", 0, "count"]``."""
    path: list[str | int] = []
    for part in dotted.split("."):
        if "[" not in part and "]" not in part:
            path.append(part)
            continue
        m = _SEGMENT.fullmatch(part)
        if m is None:
            raise ConfigError(f"override '{dotted}': bad key part {part!r} (expected a name or name[index], "
                              f"e.g. cluster.groups[0].count)")
        path.append(m.group(1))
        path.extend(int(i) for i in re.findall(r"\[([0-9]+)\]", m.group(2)))
    return path


def _step(dotted: str, seg: str | int, nxt: Any, nxt_seg: str | int) -> Any:
    """``nxt`` (the value at ``seg``) if the override can go on into it with ``nxt_seg``."""
    name = f"[{seg}]" if isinstance(seg, int) else f"'{seg}'"
    if isinstance(nxt_seg, int):
        if not isinstance(nxt, list):
            raise ConfigError(f"override '{dotted}': {name} is not a list (got {_fmt(nxt)})")
        if nxt_seg >= len(nxt):
            raise ConfigError(f"override '{dotted}': index {nxt_seg} is out of range ({name} has {len(nxt)} entries)")
    elif not isinstance(nxt, dict):
        raise ConfigError(f"override '{dotted}': {name} is not a mapping (got {_fmt(nxt)})")
    return nxt


# YAML 1.1 (PyYAML) reads ``1e3`` and ``2.5e-3`` as strings: its float pattern needs a dot
# and a signed exponent. Configs write rates and byte counts that way, so exponent notation
# (with or without a dot or an exponent sign) resolves to a float here (issue #17).
_EXP_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` plus exponent floats (``1e3``); duplicate keys are checked on the node tree."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT, list("-+0123456789."))


def _check_duplicate_keys(node: yaml.Node, path: str, source: str) -> None:
    """Raises ``ConfigError`` at the first mapping key that appears twice (YAML would keep the last)."""
    stack = [(node, path)]
    while stack:
        n, where = stack.pop()
        if isinstance(n, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    name = str(k.value)
                    dotted = f"{where}.{name}" if where else name
                    if name in seen:
                        src = f"{source}: " if source else ""
                        raise ConfigError(
                            f"{src}line {k.start_mark.line + 1}: duplicate key '{dotted}' "
                            f"(first at line {seen[name]})"
                        )
                    seen[name] = k.start_mark.line + 1
                    stack.append((v, dotted))
                else:
                    stack.append((v, where))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(n.value))


def load_yaml_text(text: str, source: str = "") -> Any:
    """Parses one YAML document: safe tags only, exponent floats, duplicate keys rejected.

    Raises:
        yaml.YAMLError: Invalid YAML.
        ConfigError: A mapping with a duplicate key (naming ``source``, the line and the key).
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_duplicate_keys(node, "", source)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_text_file(path: str | Path) -> str:
    """Reads a UTF-8 text file; missing, unreadable or non-UTF-8 files are a ``ConfigError`` naming it."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not a text file (invalid UTF-8 at byte {exc.start})") from None


def read_yaml(path: str | Path) -> Any:
    """Reads a YAML file, turning I/O and syntax problems (and duplicate keys) into one-line ``ConfigError``s."""
    p = Path(path)
    text = read_text_file(p)
    try:
        return load_yaml_text(text, str(p))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}:{where}: invalid YAML: {problem}") from None
