"""Optional integrations with outside frameworks (install their extras first).

``disagg_gym.integrations.rllib`` needs ``pip install "disagg-gym[ray]"``; this package itself
imports nothing optional, so ``import disagg_gym.integrations`` always works.
"""
