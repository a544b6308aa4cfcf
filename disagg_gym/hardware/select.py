"""Choosing an instance's cost model by name: ``roofline[:FILE]`` or ``table:PATH``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from disagg_gym.hardware.cost import CalibParams, InstanceCost, build_instance_cost, default_params
from disagg_gym.hardware.gpu import GPUSpec
from disagg_gym.hardware.model import ModelSpec
from disagg_gym.registry import Registry

__all__ = ["COST_MODELS", "DEFAULT_COST_MODEL", "build_cost", "parse_cost_model"]

DEFAULT_COST_MODEL = "roofline"

# name -> factory(roofline, argument) -> cost object with InstanceCost's interface.
COST_MODELS: Registry[Callable[[InstanceCost, str], Any]] = Registry("cost model")


@COST_MODELS.register("roofline")
def _roofline(roofline: InstanceCost, arg: str) -> InstanceCost:
    """The committed calibration, or ``roofline:FILE``: efficiencies from a calibration file.

    ``FILE`` is JSON with a ``cost`` mapping of :class:`CalibParams` fields, as written by
    ``scripts/calibrate.py --table ... --out FILE`` (or the committed ``calibration.json``);
    fields it leaves out keep the committed values.
    """
    if not arg:
        return roofline
    try:
        data = json.loads(Path(arg).read_text())
    except FileNotFoundError:
        raise ValueError(f"{arg}: calibration file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{arg}: cannot read a calibration file ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{arg}: not a text file (invalid UTF-8 at byte {exc.start})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cost"), dict):
        raise ValueError(f"{arg}: expected a JSON object with a 'cost' mapping of CalibParams")
    try:
        params = CalibParams.from_dict({**default_params().to_dict(), **data["cost"]})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{arg}: {exc}") from None
    return InstanceCost(roofline.gpu, roofline.model, roofline.tp, params)


@COST_MODELS.register("table")
def _table(roofline: InstanceCost, arg: str) -> Any:
    from disagg_gym.hardware.table_cost import TableCost, read_table

    if not arg:
        raise ValueError("cost model 'table' needs a path: table:PATH")
    return TableCost(read_table(arg), roofline)


def parse_cost_model(spec: str) -> tuple[str, str]:
    """Splits ``name`` or ``name:ARG`` (e.g. ``table:profiles/h100.csv``) into its parts.

    Raises:
        ValueError: If ``name`` is not registered in :data:`COST_MODELS`.
    """
    name, _, arg = str(spec).partition(":")
    if name not in COST_MODELS:
        raise ValueError(
            f"unknown cost model {spec!r}; expected {' or '.join(COST_MODELS.names())} "
            "(roofline:FILE for fitted parameters, table:PATH for a latency table)"
        )
    return name, arg


def build_cost(
    gpu: GPUSpec | str,
    model: ModelSpec | str,
    tp: int = 1,
    cost_model: str = DEFAULT_COST_MODEL,
) -> Any:
    """The cost object of one instance, as a config's ``cost_model`` names it.

    Args:
        gpu: A :class:`GPUSpec` or catalog id.
        model: A :class:`ModelSpec`, catalog id or YAML path.
        tp: Tensor-parallel degree.
        cost_model: ``roofline`` (the committed calibration), ``roofline:FILE`` (efficiencies
            from a calibration file, e.g. fitted by ``scripts/calibrate.py --table``) or
            ``table:PATH`` (a measured table in one of
            :data:`disagg_gym.hardware.table_cost.TABLE_FORMATS`).

    Returns:
        An object with :class:`~disagg_gym.hardware.cost.InstanceCost`'s interface.

    Raises:
        ValueError: On an unknown GPU, model or cost model, an invalid ``tp`` or a bad table
            (:class:`~disagg_gym.hardware.table_cost.TableError`, one line naming the file).
    """
    name, arg = parse_cost_model(cost_model)
    return COST_MODELS.get(name)(build_instance_cost(gpu, model, tp), arg)
