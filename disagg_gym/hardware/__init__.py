"""Hardware layer: GPU and model catalogs and the calibrated per-instance cost model.

Plain simulation library: never imports gymnasium or torch.
"""

from __future__ import annotations

from disagg_gym.hardware.cost import (
    CalibParams,
    InstanceCost,
    build_instance_cost,
    calibration_data,
    default_params,
)
from disagg_gym.hardware.gpu import GPUS, GPUSpec, get_gpu
from disagg_gym.hardware.model import MODELS, ModelSpec, load_model
from disagg_gym.hardware.select import COST_MODELS, build_cost

__all__ = [
    "COST_MODELS",
    "GPUS",
    "MODELS",
    "CalibParams",
    "GPUSpec",
    "InstanceCost",
    "ModelSpec",
    "build_cost",
    "build_instance_cost",
    "calibration_data",
    "default_params",
    "get_gpu",
    "load_model",
]
