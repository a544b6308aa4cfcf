"""Named request-length distributions fitted to published trace statistics (no trace copied).

Each preset is a clipped bivariate lognormal (a Gaussian copula carries the prompt/output
correlation): ``log(prompt) ~ N(mu_p, sigma_p)``, ``log(output) ~ N(mu_o, sigma_o)``,
correlation ``rho`` between the two normals, then rounding and clipping to the observed
[min, max]. ``mu`` and ``sigma`` are fitted to the published median and p90
(``mu = ln median``, ``sigma = (ln p90 - ln median) / 1.2816``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_Z90 = 1.2815515655446004


@dataclass(frozen=True, slots=True)
class LengthPreset:
    """A fitted length distribution and the statistics it was fitted to."""

    name: str
    prompt_median: float
    prompt_p90: float
    prompt_min: int
    prompt_max: int
    output_median: float
    output_p90: float
    output_min: int
    output_max: int
    rho: float
    source: str

    @property
    def prompt_mu_sigma(self) -> tuple[float, float]:
        """Lognormal parameters of the prompt length."""
        return math.log(self.prompt_median), (math.log(self.prompt_p90) - math.log(self.prompt_median)) / _Z90

    @property
    def output_mu_sigma(self) -> tuple[float, float]:
        """Lognormal parameters of the output length."""
        return math.log(self.output_median), (math.log(self.output_p90) - math.log(self.output_median)) / _Z90

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Draws ``n`` (prompt, output) token counts."""
        z1 = rng.standard_normal(n)
        z2 = rng.standard_normal(n)
        z2 = self.rho * z1 + math.sqrt(1.0 - self.rho**2) * z2
        mp, sp = self.prompt_mu_sigma
        mo, so = self.output_mu_sigma
        prompt = np.clip(np.rint(np.exp(mp + sp * z1)), self.prompt_min, self.prompt_max).astype(np.int64)
        output = np.clip(np.rint(np.exp(mo + so * z2)), self.output_min, self.output_max).astype(np.int64)
        return prompt, output


_TRACES = "statistics in shared/data/traces/README.md (computed over every row of the public trace)"

LENGTH_PRESETS: dict[str, LengthPreset] = {
    p.name: p
    for p in (
        LengthPreset(
            "azure_conv", 1020, 2734.5, 2, 14050, 129, 424, 7, 1000, -0.112,
            f"Azure LLM inference trace 2023, conversation (19,366 rows); {_TRACES}",
        ),
        LengthPreset(
            "azure_code", 1500, 4500, 3, 7500, 13, 60, 3, 1000, 0.0,
            "Azure LLM inference trace 2023, code: medians (prompt 1,500, output 13 tokens) as published "
            "in Splitwise (Patel et al., ISCA 2024); the p90s (4,500 and 60) and the caps are our "
            "assumption (the code trace is not in shared/), chosen for a long prompt tail and short outputs",
        ),
        LengthPreset(
            "mooncake_conv", 6909, 27367, 891, 126195, 350, 597, 1, 2000, 0.072,
            f"Mooncake FAST'25 conversation trace (12,031 rows); {_TRACES}",
        ),
        LengthPreset(
            "mooncake_synthetic", 11587, 38611.2, 13, 191378, 69, 389, 1, 893, -0.374,
            f"Mooncake FAST'25 synthetic trace (3,993 rows); {_TRACES}",
        ),
    )
}


def preset_names() -> list[str]:
    """Names accepted by ``WorkloadConfig.lengths`` (plus ``fixed``)."""
    return sorted(LENGTH_PRESETS) + ["fixed"]
