"""Test helpers shipped for users: invariant checks and toy scenarios."""
