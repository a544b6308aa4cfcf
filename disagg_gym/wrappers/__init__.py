"""Small ``gym.Wrapper`` subclasses, one concern each."""

from disagg_gym.wrappers.action_mask import ActionMaskDict

__all__ = ["ActionMaskDict"]
