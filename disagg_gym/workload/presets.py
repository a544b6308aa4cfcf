"""Request-length presets: clipped two-lognormal mixtures fitted to published trace statistics.

Each preset models the prompt and output token counts of one public LLM-serving trace. Per
dimension the model is ``X = clip(exp(Y), min_tokens, max_tokens)`` with ``Y`` a mixture
``w * N(ln m1, s1^2) + (1 - w) * N(ln m2, s2^2)``; a Gaussian copula carries the
prompt/output correlation. Only the fitted parameters and the statistics they were fitted to
live here (no trace data); ``docs/workloads.md`` tabulates both.

Sampling pushes standard normals through the mixture's quantile function
(``y = F^-1(Phi(z))``), so a pair of normals ``(z_p, z_o)`` with correlation ``copula_rho``
gives correlated prompt and output lengths with exactly the fitted marginals.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from disagg_gym.registry import by_name

#: Standard-normal scores of the 90th and 99th percentiles.
Z_P90 = 1.2815515655446004
Z_P99 = 2.3263478740408408

_SQRT2 = math.sqrt(2.0)
# Sampling table: ln(tokens) at these standard-normal scores, linearly interpolated. The
# spacing (0.004) keeps the interpolation error far below one token; |z| > 8.5 has
# probability 2e-17 and is clamped to the table's ends.
_Z_GRID = np.linspace(-8.5, 8.5, 4097)


_ERFC_COEFFS = (
    -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
    0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277,
)  # fmt: skip


def std_normal_cdf(x: np.ndarray | float) -> np.ndarray:
    """Standard normal CDF, vectorised, with relative error < 1.2e-7 in both tails.

    Uses the Chebyshev fit of ``erfc`` from Numerical Recipes (``erfcc``), so numpy alone
    suffices (no scipy dependency).
    """
    x = np.asarray(x, dtype=np.float64)
    z = np.abs(x) / _SQRT2
    t = 1.0 / (1.0 + 0.5 * z)
    poly = np.full_like(t, _ERFC_COEFFS[-1])
    for c in _ERFC_COEFFS[-2::-1]:  # Horner: c0 + t * (c1 + t * (... + t * c9))
        poly = c + t * poly
    tail = 0.5 * t * np.exp(-z * z + poly)  # = Phi(-|x|)
    out: np.ndarray = np.where(x >= 0, 1.0 - tail, tail)
    return out


@dataclass(frozen=True, slots=True)
class TokenStats:
    """Published summary statistics of one token-count column of a trace."""

    mean_tokens: float = field(metadata={"help": "mean, tokens"})
    median_tokens: float = field(metadata={"help": "median (p50), tokens"})
    p90_tokens: float | None = field(
        metadata={"help": "90th percentile, tokens; None if unpublished"}
    )
    p99_tokens: float = field(metadata={"help": "99th percentile, tokens"})
    min_tokens: int = field(metadata={"help": "smallest value, tokens (the model's lower clip)"})
    max_tokens: int = field(metadata={"help": "largest value, tokens (the model's upper clip)"})


@dataclass(frozen=True, slots=True)
class LognormalMixture:
    """A clipped mixture of two lognormals over token counts (one dimension of a preset).

    ``weight_1 == 1`` makes it a single clipped lognormal (component 2 is then unused).
    """

    weight_1: float = field(metadata={"help": "mixture weight of component 1, in (0, 1]"})
    median_1_tokens: float = field(metadata={"help": "median of component 1 (exp of its log-mean)"})
    sigma_1: float = field(metadata={"help": "std-dev of ln(tokens) in component 1"})
    median_2_tokens: float = field(metadata={"help": "median of component 2, tokens"})
    sigma_2: float = field(metadata={"help": "std-dev of ln(tokens) in component 2"})
    min_tokens: int = field(metadata={"help": "lower clip, tokens"})
    max_tokens: int = field(metadata={"help": "upper clip, tokens"})

    def __post_init__(self) -> None:
        if not 0.0 < self.weight_1 <= 1.0:
            raise ValueError(f"weight_1 must be in (0, 1] (got {self.weight_1!r})")
        for name in ("median_1_tokens", "sigma_1", "median_2_tokens", "sigma_2"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0 (got {value!r})")
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise ValueError(
                f"need 1 <= min_tokens <= max_tokens (got {self.min_tokens!r}, {self.max_tokens!r})"
            )

    def _components(self) -> tuple[tuple[float, float, float], ...]:
        comps: tuple[tuple[float, float, float], ...] = (
            (self.weight_1, math.log(self.median_1_tokens), self.sigma_1),
        )
        if self.weight_1 < 1.0:
            comps += ((1.0 - self.weight_1, math.log(self.median_2_tokens), self.sigma_2),)
        return comps

    def _bisect_log(self, below: object, shape: tuple[int, ...]) -> np.ndarray:
        """Bisection on ln(tokens): ``below(y)`` is True where the root lies above ``y``."""
        comps = self._components()
        lo = np.full(shape, min(mu - 12.0 * s for _, mu, s in comps))
        hi = np.full(shape, max(mu + 12.0 * s for _, mu, s in comps))
        for _ in range(52):  # 24 sigma / 2**52: below float64 resolution of ln(tokens)
            mid = 0.5 * (lo + hi)
            go_up = below(mid)  # type: ignore[operator]
            lo = np.where(go_up, mid, lo)
            hi = np.where(go_up, hi, mid)
        out: np.ndarray = 0.5 * (lo + hi)
        return out

    def _cdf_log(self, y: np.ndarray) -> np.ndarray:
        return sum(
            (w * std_normal_cdf((y - mu) / s) for w, mu, s in self._components()), np.zeros_like(y)
        )

    def _sf_log(self, y: np.ndarray) -> np.ndarray:
        return sum(
            (w * std_normal_cdf((mu - y) / s) for w, mu, s in self._components()), np.zeros_like(y)
        )

    def log_quantile_z(self, z: np.ndarray) -> np.ndarray:
        """Unclipped ``ln(tokens)`` at standard-normal scores ``z``, i.e. ``F^-1(Phi(z))``.

        The lower half solves ``F(y) = Phi(z)`` and the upper half ``1 - F(y) = Phi(-z)``, so
        extreme scores keep full relative precision.
        """
        z = np.asarray(z, dtype=np.float64)
        out = np.empty(z.shape)
        upper = z > 0
        zl, zu = z[~upper], z[upper]
        p_lo, p_hi = std_normal_cdf(zl), std_normal_cdf(-zu)
        out[~upper] = self._bisect_log(lambda y: self._cdf_log(y) < p_lo, zl.shape)
        out[upper] = self._bisect_log(lambda y: self._sf_log(y) > p_hi, zu.shape)
        return out

    def quantile(self, q: np.ndarray | float) -> np.ndarray:
        """Continuous (not rounded) clipped quantile at probability ``q`` in (0, 1), tokens."""
        q = np.asarray(q, dtype=np.float64)
        y = self._bisect_log(lambda y: self._cdf_log(y) < q, q.shape)
        out: np.ndarray = np.clip(np.exp(y), self.min_tokens, self.max_tokens)
        return out

    def mean_tokens(self) -> float:
        """Mean of the clipped (continuous) distribution, in closed form."""
        llo, lhi = math.log(self.min_tokens), math.log(self.max_tokens)
        total = 0.0
        for w, mu, s in self._components():
            a, b = (llo - mu) / s, (lhi - mu) / s
            body = float(std_normal_cdf(b - s) - std_normal_cdf(a - s))
            total += w * (
                self.min_tokens * float(std_normal_cdf(a))
                + math.exp(mu + 0.5 * s * s) * body
                + self.max_tokens * float(std_normal_cdf(-b))
            )
        return total


@dataclass(frozen=True, slots=True)
class LengthPreset:
    """A named request-length distribution and the published statistics it reproduces."""

    name: str = field(metadata={"help": "preset name used in WorkloadConfig.lengths"})
    description: str = field(metadata={"help": "one line on the workload"})
    source: str = field(metadata={"help": "where the statistics were published, and assumptions"})
    n_requests: int = field(
        metadata={"help": "rows of the trace the statistics describe (0: not published)"}
    )
    prompt_stats: TokenStats = field(metadata={"help": "published prompt-token statistics"})
    output_stats: TokenStats = field(metadata={"help": "published output-token statistics"})
    correlation: float | None = field(
        metadata={"help": "published Pearson corr(prompt, output); None if unpublished"}
    )
    prompt: LognormalMixture = field(metadata={"help": "fitted prompt-token model"})
    output: LognormalMixture = field(metadata={"help": "fitted output-token model"})
    copula_rho: float = field(
        metadata={"help": "latent Gaussian-copula correlation reproducing `correlation`"}
    )

    def sampler(self) -> LengthSampler:
        """A sampler with precomputed quantile tables (build once, draw many times)."""
        return LengthSampler(self.prompt, self.output, self.copula_rho)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Draws ``n`` (prompt, output) token counts; builds the tables on every call."""
        return self.sampler().sample(rng, n)


def _interp_z(z: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``table`` (values on the uniform ``_Z_GRID``) at ``z``.

    O(1) per point (index arithmetic instead of ``np.interp``'s binary search).
    """
    last = _Z_GRID.size - 1
    pos = (np.clip(z, _Z_GRID[0], _Z_GRID[-1]) - _Z_GRID[0]) * (last / (_Z_GRID[-1] - _Z_GRID[0]))
    k = np.minimum(pos.astype(np.intp), last - 1)
    frac = pos - k
    lo = table[k]
    out: np.ndarray = lo + frac * (table[k + 1] - lo)
    return out


@functools.lru_cache(maxsize=64)
def _sampling_table(model: LognormalMixture) -> np.ndarray:
    """``ln(tokens)`` of ``model`` on ``_Z_GRID`` (read-only).

    Memoised because environments rebuild their arrival source on every ``reset``; the table
    is a pure function of the frozen model, so caching cannot change any draw.
    """
    table = model.log_quantile_z(_Z_GRID)
    table.flags.writeable = False
    return table


class LengthSampler:
    """Draws correlated (prompt, output) token counts from two fitted marginals.

    Each draw consumes exactly two standard normals from ``rng`` (one per dimension), so a
    run's length sequence depends only on the seed and the number of requests.

    Args:
        prompt: Prompt-token marginal.
        output: Output-token marginal.
        rho: Correlation of the latent normals (Gaussian copula), in (-1, 1).
    """

    __slots__ = ("_bounds", "_output_log", "_prompt_log", "_rho", "_rho_c")

    def __init__(self, prompt: LognormalMixture, output: LognormalMixture, rho: float) -> None:
        if not -1.0 < rho < 1.0:
            raise ValueError(f"copula rho must be in (-1, 1) (got {rho!r})")
        self._prompt_log = _sampling_table(prompt)
        self._output_log = _sampling_table(output)
        self._rho = rho
        self._rho_c = math.sqrt(1.0 - rho * rho)
        self._bounds = (prompt.min_tokens, prompt.max_tokens, output.min_tokens, output.max_tokens)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``(prompt_tokens, output_tokens)``, two int64 arrays of length ``n``."""
        z = rng.standard_normal((n, 2))
        zp = z[:, 0]
        zo = self._rho * zp + self._rho_c * z[:, 1]
        pmin, pmax, omin, omax = self._bounds
        prompt = np.rint(np.exp(_interp_z(zp, self._prompt_log)))
        output = np.rint(np.exp(_interp_z(zo, self._output_log)))
        return (
            np.clip(prompt, pmin, pmax).astype(np.int64),
            np.clip(output, omin, omax).astype(np.int64),
        )


# ---------------------------------------------------------------------------------------------
# Fitting: how the parameters below were produced (kept so a new preset is reproducible).
# ---------------------------------------------------------------------------------------------


def fit_residuals(model: LognormalMixture, stats: TokenStats) -> dict[str, float]:
    """``ln(model / published)`` for each statistic a fit targets (median, p90, p99, mean)."""
    names = ["median", "p90", "p99"]
    probs = [0.5, 0.9, 0.99]
    targets = [stats.median_tokens, stats.p90_tokens, stats.p99_tokens]
    keep = [i for i, t in enumerate(targets) if t is not None]
    qs = model.quantile(np.array([probs[i] for i in keep]))
    out = {names[i]: math.log(float(q) / float(targets[i] or 1.0)) for i, q in zip(keep, qs)}
    out["mean"] = math.log(model.mean_tokens() / stats.mean_tokens)
    return out


def _mixture_from_theta(theta: np.ndarray, stats: TokenStats) -> LognormalMixture:
    w = 1.0 / (1.0 + math.exp(-float(theta[0])))
    return LognormalMixture(
        weight_1=min(max(w, 1e-9), 1.0 - 1e-9),
        median_1_tokens=math.exp(float(theta[1])),
        sigma_1=math.exp(float(theta[2])),
        median_2_tokens=math.exp(float(theta[3])),
        sigma_2=math.exp(float(theta[4])),
        min_tokens=stats.min_tokens,
        max_tokens=stats.max_tokens,
    )


def fit_lognormal_mixture(
    stats: TokenStats, initial: LognormalMixture | None = None, *, max_iter: int = 200
) -> LognormalMixture:
    """Fits a clipped two-lognormal mixture to the median, p90, p99 and mean.

    Levenberg-Marquardt on the log-ratios returned by ``fit_residuals``. Five parameters
    meet four targets, so exact fits form a family; ``initial`` picks one member. With
    ``stats.p90_tokens is None`` a mixture is under-determined, so a single clipped lognormal
    (``weight_1 == 1``) is fitted to the median (exactly) and the mean (by its sigma); the
    p99 is then a check, not a target.

    Args:
        stats: The published statistics; ``min_tokens``/``max_tokens`` become the clip range.
        initial: Starting point (defaults to two components half a log-unit either side of
            the median).
        max_iter: Iteration cap.

    Returns:
        The fitted model; check ``fit_residuals`` for the accuracy reached.
    """
    if stats.p90_tokens is None:
        return _fit_single_lognormal(stats)
    if initial is None:
        lm = math.log(stats.median_tokens)
        theta = np.array([0.0, lm - 0.5, -0.5, lm + 0.5, -0.5])
    else:
        w = min(max(initial.weight_1, 1e-6), 1.0 - 1e-6)
        theta = np.array(
            [
                math.log(w / (1.0 - w)),
                math.log(initial.median_1_tokens),
                math.log(initial.sigma_1),
                math.log(initial.median_2_tokens),
                math.log(initial.sigma_2),
            ]
        )

    def resid(th: np.ndarray) -> np.ndarray:
        return np.array(list(fit_residuals(_mixture_from_theta(th, stats), stats).values()))

    lam = 1e-3
    r = resid(theta)
    cost = float(r @ r)
    for _ in range(max_iter):
        if cost < 1e-20:
            break
        jac = np.empty((r.size, theta.size))
        for j in range(theta.size):
            step = np.zeros_like(theta)
            step[j] = 1e-6
            jac[:, j] = (resid(theta + step) - r) / 1e-6
        a, g = jac.T @ jac, jac.T @ r
        improved = False
        while lam < 1e10:
            damp = lam * (np.diag(np.diag(a)) + 1e-9 * np.eye(theta.size))
            cand = theta + np.linalg.solve(a + damp, -g)
            if np.all(np.abs(cand[[2, 4]]) < 3.0):  # sigmas within (0.05, 20)
                r2 = resid(cand)
                c2 = float(r2 @ r2)
                if c2 < cost:
                    theta, r, cost, improved = cand, r2, c2, True
                    lam = max(lam / 3.0, 1e-12)
                    break
            lam *= 4.0
        if not improved:
            break
    return _mixture_from_theta(theta, stats)


def _fit_single_lognormal(stats: TokenStats) -> LognormalMixture:
    def model(sigma: float) -> LognormalMixture:
        return LognormalMixture(
            1.0,
            stats.median_tokens,
            sigma,
            stats.median_tokens,
            sigma,
            stats.min_tokens,
            stats.max_tokens,
        )

    lo, hi = 1e-3, 5.0
    for _ in range(80):  # the clipped mean grows with sigma
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if model(mid).mean_tokens() < stats.mean_tokens else (lo, mid)
    return model(0.5 * (lo + hi))


@functools.lru_cache(maxsize=1)
def _gauss_hermite() -> tuple[np.ndarray, np.ndarray]:
    """96 Gauss-Hermite nodes and normalised weights (probabilists'), computed on first use:
    ``hermegauss`` solves an eigenproblem, which wakes numpy's BLAS worker threads, and an
    import that did so left them spinning beside every simulation (``disagg-gym bench``).
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(96)
    return nodes, weights / weights.sum()


def copula_correlation(prompt: LognormalMixture, output: LognormalMixture, rho: float) -> float:
    """Pearson correlation of (prompt, output) tokens when the latent normals correlate ``rho``.

    Computed by 96x96-point Gauss-Hermite quadrature (no sampling).
    """
    nodes, weights = _gauss_hermite()
    z1 = nodes[:, None]
    z2 = rho * z1 + math.sqrt(max(0.0, 1.0 - rho * rho)) * nodes[None, :]
    w = weights[:, None] * weights[None, :]

    def tokens(model: LognormalMixture, z: np.ndarray) -> np.ndarray:
        y = _interp_z(z, _sampling_table(model))
        out: np.ndarray = np.clip(np.exp(y), model.min_tokens, model.max_tokens)
        return out

    x = np.broadcast_to(tokens(prompt, z1), z2.shape)
    y = tokens(output, z2)
    mx, my = float((w * x).sum()), float((w * y).sum())
    cov = float((w * (x - mx) * (y - my)).sum())
    vx, vy = float((w * (x - mx) ** 2).sum()), float((w * (y - my) ** 2).sum())
    return cov / math.sqrt(vx * vy)


def fit_copula_rho(prompt: LognormalMixture, output: LognormalMixture, target: float) -> float:
    """Latent correlation whose ``copula_correlation`` equals ``target`` (bisection)."""
    lo, hi = -0.999, 0.999
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if copula_correlation(prompt, output, mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------------------------------
# The presets: fit_lognormal_mixture / fit_copula_rho output, rounded to 5 significant digits.
# Every stored model reproduces its targets to within 0.01 % (tests/workload/test_generators.py).
# ---------------------------------------------------------------------------------------------

_README = (
    "shared/data/traces/README.md 'Summary statistics' (numpy over every row of the public "
    "trace file)"
)

_PRESETS: tuple[LengthPreset, ...] = (
    LengthPreset(
        name="azure_conv",
        description="Azure LLM inference trace 2023, conversation service (Splitwise, ISCA'24)",
        source="Azure/AzurePublicDataset data/AzureLLMInferenceTrace_conv.csv; statistics: "
        + _README,
        n_requests=19_366,
        prompt_stats=TokenStats(1154.7, 1020, 2734.5, 4142, 2, 14_050),
        output_stats=TokenStats(211.1, 129, 424, 601, 7, 1000),
        correlation=-0.112,
        prompt=LognormalMixture(0.49072, 63.003, 1.0533, 2037.3, 0.34409, 2, 14_050),
        output=LognormalMixture(0.58671, 101.01, 0.23392, 350.04, 0.27385, 7, 1000),
        copula_rho=-0.13531,
    ),
    LengthPreset(
        name="azure_code",
        description="Azure LLM inference trace 2023, coding service: long prompts, short outputs",
        source=(
            "Splitwise (Patel et al., ISCA 2024) publishes the medians (prompt ~1,500, output 13 "
            "tokens); median 1,469 / mean 2,048 / p99 7,436 (prompt) and median 13 / mean 28 / "
            "p99 249 (output) are computed from the released AzureLLMInferenceTrace_code.csv "
            "(8,819 rows) in public trace notes. ASSUMED (not published): no p90 (so a single "
            "lognormal fitted to median+mean), prompt cap 7,436 = p99 (requests pile up at the "
            "~7.4k context limit), output range [6, 1000], correlation 0"
        ),
        n_requests=8_819,
        prompt_stats=TokenStats(2048, 1469, None, 7436, 1, 7436),
        output_stats=TokenStats(28, 13, None, 249, 6, 1000),
        correlation=None,
        prompt=LognormalMixture(1.0, 1469, 0.88431, 1469, 0.88431, 1, 7436),
        output=LognormalMixture(1.0, 13, 1.2203, 13, 1.2203, 6, 1000),
        copula_rho=0.0,
    ),
    LengthPreset(
        name="mooncake_conv",
        description="Mooncake (Kimi) FAST'25 conversation trace: long multi-turn contexts",
        source="kvcache-ai/Mooncake FAST25-release/traces/conversation_trace.jsonl; statistics: "
        + _README,
        n_requests=12_031,
        prompt_stats=TokenStats(12_035.1, 6909, 27_367, 85_400.4, 891, 126_195),
        output_stats=TokenStats(342.6, 350, 597, 1118.5, 1, 2000),
        correlation=0.072,
        prompt=LognormalMixture(0.23671, 2216.2, 1.7138, 8323.2, 0.96592, 891, 126_195),
        output=LognormalMixture(0.63945, 414.43, 0.30846, 70.223, 1.4317, 1, 2000),
        copula_rho=0.096044,
    ),
    LengthPreset(
        name="mooncake_synthetic",
        description="Mooncake FAST'25 synthetic trace (ShareGPT + L-Eval + LooGLE mix)",
        source="kvcache-ai/Mooncake FAST25-release/traces/synthetic_trace.jsonl; statistics: "
        + _README,
        n_requests=3_993,
        prompt_stats=TokenStats(15_325.5, 11_587, 38_611.2, 66_456.2, 13, 191_378),
        output_stats=TokenStats(149.1, 69, 389, 768.1, 1, 893),
        correlation=-0.374,
        prompt=LognormalMixture(0.49121, 161.34, 1.9882, 26_299.0, 0.44428, 13, 191_378),
        output=LognormalMixture(0.7507, 39.636, 1.2922, 316.5, 0.36303, 1, 893),
        copula_rho=-0.51326,
    ),
)

# DistServe (Zhong et al., OSDI 2024) publishes for its three evaluation datasets only the
# mean prompt and output lengths (OPT tokenizer; Figure 7's legend) and histograms. The caps
# come from DistServe's dataset script (LLMServe/DistServe
# distserve/evaluation/2-benchmark-serving/0-prepare-dataset.py): ShareGPT and HumanEval
# drop requests with prompt + output >= 2048 (OPT's context), LongBench truncates contexts to
# at most 2040 tokens. The medians are ASSUMED (a nominal lognormal spread s = 0.5: median =
# mean * exp(-s^2/2); LongBench prompts 1,800, since the script truncates long documents to
# 1,900-2,040 tokens), so each dimension
# is a single clipped lognormal matching the published mean and the assumed median; p99 is
# the model's (a check); correlation unpublished (assumed 0). docs/workloads.md has the table.
_DISTSERVE = (
    "means: DistServe (Zhong et al., OSDI 2024) Figure 7 legend; caps: DistServe's "
    "evaluation/2-benchmark-serving/0-prepare-dataset.py; ASSUMED (not published): medians "
    "(nominal lognormal spread), hence p99, and correlation 0"
)

_PRESETS += (
    LengthPreset(
        name="distserve_sharegpt",
        description="ShareGPT chat as DistServe evaluates it (OPT tokenizer, < 2048 tokens)",
        source=_DISTSERVE + "; mean prompt 755.5, mean output 200.3",
        n_requests=0,
        prompt_stats=TokenStats(755.5, 666.7, None, 2047, 1, 2047),
        output_stats=TokenStats(200.3, 176.8, None, 565.2, 1, 2047),
        correlation=None,
        prompt=LognormalMixture(1.0, 666.7, 0.51776, 666.7, 0.51776, 1, 2047),
        output=LognormalMixture(1.0, 176.8, 0.4996, 176.8, 0.4996, 1, 2047),
        copula_rho=0.0,
    ),
    LengthPreset(
        name="distserve_humaneval",
        description="HumanEval code completion as DistServe evaluates it: short prompts and outputs",
        source=_DISTSERVE + "; mean prompt 171.3, mean output 98.2",
        n_requests=1640,
        prompt_stats=TokenStats(171.3, 151.2, None, 483.4, 1, 2047),
        output_stats=TokenStats(98.2, 86.7, None, 276.9, 1, 2047),
        correlation=None,
        prompt=LognormalMixture(1.0, 151.2, 0.49963, 151.2, 0.49963, 1, 2047),
        output=LognormalMixture(1.0, 86.7, 0.4991, 86.7, 0.4991, 1, 2047),
        copula_rho=0.0,
    ),
    LengthPreset(
        name="distserve_longbench",
        description="LongBench summarisation as DistServe evaluates it: ~2k-token prompts",
        source=_DISTSERVE + "; mean prompt 1738.3, mean output 90.7",
        n_requests=0,
        prompt_stats=TokenStats(1738.3, 1800, None, 2040, 1, 2040),
        output_stats=TokenStats(90.7, 80.0, None, 256.6, 1, 2047),
        correlation=None,
        prompt=LognormalMixture(1.0, 1800, 0.25681, 1800, 0.25681, 1, 2040),
        output=LognormalMixture(1.0, 80.0, 0.50106, 80.0, 0.50106, 1, 2047),
        copula_rho=0.0,
    ),
)

#: Length presets by name (read-only).
LENGTH_PRESETS: Mapping[str, LengthPreset] = by_name(_PRESETS, "length preset")


def preset_names() -> list[str]:
    """Values accepted by ``WorkloadConfig.lengths``: the presets, sorted, then ``"fixed"``."""
    return sorted(LENGTH_PRESETS) + ["fixed"]


def get_preset(name: str) -> LengthPreset:
    """The preset called ``name``; ``ValueError`` lists the valid names."""
    try:
        return LENGTH_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown length preset; expected one of {', '.join(sorted(LENGTH_PRESETS))} "
            f"(got {name!r})"
        ) from None
