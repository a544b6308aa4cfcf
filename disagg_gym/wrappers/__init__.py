"""Small ``gym.Wrapper`` subclasses, one concern each."""

from disagg_gym.wrappers.action_mask import ActionMaskDict
from disagg_gym.wrappers.shaping import QueueShaping, TruncationAdvance
from disagg_gym.wrappers.telemetry import ObservationNoise, StaleObservation
from disagg_gym.wrappers.workload_seeds import HeldOutWorkloadSeeds, TrainingWorkloadSeeds

__all__ = [
    "ActionMaskDict",
    "HeldOutWorkloadSeeds",
    "ObservationNoise",
    "QueueShaping",
    "StaleObservation",
    "TrainingWorkloadSeeds",
    "TruncationAdvance",
]
