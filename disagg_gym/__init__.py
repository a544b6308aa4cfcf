"""disagg-gym: a calibrated simulator and Gymnasium environments for disaggregated LLM serving.

``import disagg_gym`` registers every standard config as a versioned Gymnasium id
(``disagg/<Name>-v<N>``) without reading any file (each config loads on ``gym.make``);
``disagg_gym.env.registration.registered_ids()`` lists them (the variants it also registers,
``-short`` and ``-fine`` ids, are in ``gym.registry``).
"""

from __future__ import annotations

__version__ = "0.1.0"


def _register() -> None:
    try:
        import gymnasium  # noqa: F401
    except ImportError:  # the simulator works without Gymnasium
        return
    from disagg_gym.env.registration import register_all

    register_all()


_register()
