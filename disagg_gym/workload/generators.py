"""Workload generators: Poisson, bursty Gamma and time-varying arrivals, lengths, SLOs, replay.

``WorkloadConfig.build(streams, horizon_s, max_requests, start_s)`` returns an
``ArrivalSource`` that yields vectorised ``ArrivalChunk``s of at most ``CHUNK_SIZE``
arrivals, so an hour at 20 req/s costs milliseconds and memory stays bounded. Inter-arrival
times come from the ``arrivals`` stream and lengths from the ``lengths`` stream, so changing
the length preset never moves an arrival time.

Arrival processes and rate profiles are registered by name (``ARRIVAL_PROCESSES``,
``RATE_PROFILES``); adding one is a class plus ``@register`` (and a ``Literal`` value on the
config field).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from disagg_gym.config import spec
from disagg_gym.errors import UserError
from disagg_gym.registry import Registry
from disagg_gym.rng import RngStreams
from disagg_gym.workload.prefix import MOONCAKE_BLOCK_TOKENS
from disagg_gym.workload.prefix_workloads import PREFIX_WORKLOADS, PrefixSource
from disagg_gym.workload.presets import LENGTH_PRESETS, preset_names
from disagg_gym.workload.source import ArrivalChunk, ArrivalSource
from disagg_gym.workload.traces import MAX_SKIP_REASONS, TraceData, TraceError, load_trace

#: Most arrivals in one ``ArrivalChunk``.
CHUNK_SIZE = 4096
CHUNK = CHUNK_SIZE  # backwards-compatible alias
#: Inter-arrival draws per batch (fixed, so the arrival sequence never depends on limits).
DRAW_BATCH = 1024
#: Sanity cap on the expected arrivals of one run (rate x horizon, or trace passes x rows):
#: above it a run would take days and the cause is a typo (``--rate-scale 1e300``), so it is
#: an error before any work (issue #17). ``max_requests`` bounds a run and lifts the cap.
MAX_EXPECTED_ARRIVALS = 1e9
#: Largest ``cv`` of a gamma process: above it almost every inter-arrival gap (shape
#: ``1 / cv**2``) underflows to 0 s, so arrivals stop advancing and the run never ends.
MAX_GAMMA_CV = 1000.0


# ------------------------------------------------------------------------------- rate profiles
class RateProfile(Protocol):
    """Instantaneous arrival rate of a time-varying workload."""

    @property
    def max_rate_per_s(self) -> float:
        """An upper bound of ``rate_at`` over all time (the thinning envelope)."""
        ...

    def rate_at(self, t_s: np.ndarray) -> np.ndarray:
        """Rate (requests/s) at times ``t_s`` measured from the workload's start."""
        ...


RATE_PROFILES: Registry[Callable[[WorkloadConfig], RateProfile]] = Registry("rate profile")


def _sniffed_format(path: str) -> str:
    """``mooncake`` or ``azure`` as the trace replay will detect it from the first non-empty
    line; by the file name (``.jsonl``: mooncake) when the file cannot be read or named yet.
    """
    from disagg_gym.workload.traces import TraceError, detect_format

    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:  # as traces._decode reads it
            for _ in range(1000):  # skip blank lines, reading at most 64 KiB of each
                line = fh.readline(65536)
                if not line:
                    break
                if line.strip():
                    return detect_format(path, line)
    except (OSError, TraceError):
        pass
    return "mooncake" if str(path).endswith(".jsonl") else "azure"


@dataclass(frozen=True, slots=True)
class ConstantRate:
    """``rate_per_s`` at all times (a homogeneous Poisson process)."""

    rate_per_s: float

    @property
    def max_rate_per_s(self) -> float:
        """The rate itself."""
        return self.rate_per_s

    def rate_at(self, t_s: np.ndarray) -> np.ndarray:
        """``rate_per_s`` everywhere."""
        return np.full(np.shape(t_s), self.rate_per_s)


@dataclass(frozen=True, slots=True)
class DiurnalRate:
    """``rate * (1 + amplitude * sin(2 pi t / period))``: mean ``rate`` over a whole period."""

    rate_per_s: float
    amplitude: float
    period_s: float

    @property
    def max_rate_per_s(self) -> float:
        """Peak of the sine."""
        return self.rate_per_s * (1.0 + self.amplitude)

    def rate_at(self, t_s: np.ndarray) -> np.ndarray:
        """Sinusoidal rate, starting at the mean and rising."""
        return self.rate_per_s * (
            1.0 + self.amplitude * np.sin(2.0 * math.pi * t_s / self.period_s)
        )


@dataclass(frozen=True, slots=True)
class StepRate:
    """``rate`` before ``step_at_s``, ``rate * factor`` from then on."""

    rate_per_s: float
    step_at_s: float
    factor: float

    @property
    def max_rate_per_s(self) -> float:
        """The larger of the two levels."""
        return self.rate_per_s * max(1.0, self.factor)

    def rate_at(self, t_s: np.ndarray) -> np.ndarray:
        """Piecewise-constant rate."""
        return np.where(t_s >= self.step_at_s, self.rate_per_s * self.factor, self.rate_per_s)


@dataclass(frozen=True, slots=True)
class SpikeRate:
    """``rate * factor`` during ``[spike_at_s, spike_at_s + duration_s)``, ``rate`` otherwise."""

    rate_per_s: float
    spike_at_s: float
    duration_s: float
    factor: float

    @property
    def max_rate_per_s(self) -> float:
        """The larger of the two levels."""
        return self.rate_per_s * max(1.0, self.factor)

    def rate_at(self, t_s: np.ndarray) -> np.ndarray:
        """Piecewise-constant rate with one window."""
        on = (t_s >= self.spike_at_s) & (t_s < self.spike_at_s + self.duration_s)
        return np.where(on, self.rate_per_s * self.factor, self.rate_per_s)


RATE_PROFILES.register("constant")(lambda c: ConstantRate(c.rate_per_s))
RATE_PROFILES.register("diurnal")(lambda c: DiurnalRate(c.rate_per_s, c.amplitude, c.period_s))
RATE_PROFILES.register("step")(lambda c: StepRate(c.rate_per_s, c.step_at_s, c.step_factor))
RATE_PROFILES.register("spike")(
    lambda c: SpikeRate(c.rate_per_s, c.spike_at_s, c.spike_duration_s, c.spike_factor)
)


# --------------------------------------------------------------------------- arrival processes
class ArrivalProcess(Protocol):
    """Draws arrival times; stateless (the source carries the clock)."""

    def batch(self, rng: np.random.Generator, after_s: float, n: int) -> tuple[np.ndarray, float]:
        """Up to ``n`` arrival times after ``after_s`` (relative seconds, sorted).

        Returns:
            ``(times, resume_s)``: the times, and the clock value to pass as ``after_s`` next
            time (the last candidate drawn, which thinning may have rejected).
        """
        ...


ARRIVAL_PROCESSES: Registry[Callable[[WorkloadConfig], ArrivalProcess]] = Registry(
    "arrival process"
)


@dataclass(frozen=True, slots=True)
class PoissonProcess:
    """Exponential inter-arrival times with mean ``1 / rate_per_s`` (CV 1)."""

    rate_per_s: float

    def batch(self, rng: np.random.Generator, after_s: float, n: int) -> tuple[np.ndarray, float]:
        """``n`` arrivals."""
        t = after_s + np.cumsum(rng.exponential(1.0 / self.rate_per_s, n))
        return t, float(t[-1])


@dataclass(frozen=True, slots=True)
class GammaProcess:
    """Gamma inter-arrival times (a renewal process) with mean ``1 / rate_per_s`` and CV ``cv``.

    Shape ``k = 1 / cv**2`` and scale ``1 / (rate * k)``: ``cv > 1`` is burstier than
    Poisson, ``cv < 1`` more regular, ``cv == 1`` is Poisson. The first arrival is one
    inter-arrival time after the start (an ordinary, not equilibrium, renewal process).
    """

    rate_per_s: float
    cv: float

    def batch(self, rng: np.random.Generator, after_s: float, n: int) -> tuple[np.ndarray, float]:
        """``n`` arrivals."""
        k = 1.0 / (self.cv * self.cv)
        t = after_s + np.cumsum(rng.gamma(k, 1.0 / (self.rate_per_s * k), n))
        return t, float(t[-1])


@dataclass(frozen=True, slots=True)
class ThinnedPoissonProcess:
    """Non-homogeneous Poisson arrivals by thinning (Lewis and Shedler, 1979).

    Candidates arrive as a Poisson process at the profile's peak rate; each is kept with
    probability ``rate_at(t) / max_rate``. Exact for any bounded profile.
    """

    profile: RateProfile

    def batch(self, rng: np.random.Generator, after_s: float, n: int) -> tuple[np.ndarray, float]:
        """``n`` candidates, of which the kept ones are returned."""
        peak = self.profile.max_rate_per_s
        cand = after_s + np.cumsum(rng.exponential(1.0 / peak, n))
        keep = rng.random(n) * peak < self.profile.rate_at(cand)
        return cand[keep], float(cand[-1])


ARRIVAL_PROCESSES.register("poisson")(lambda c: PoissonProcess(c.rate_per_s))
ARRIVAL_PROCESSES.register("gamma")(lambda c: GammaProcess(c.rate_per_s, c.cv))
ARRIVAL_PROCESSES.register("time_varying")(
    lambda c: ThinnedPoissonProcess(RATE_PROFILES.get(c.rate_profile)(c))
)


# ------------------------------------------------------------------------------------ lengths
class LengthModel(Protocol):
    """Draws (prompt, output) token counts."""

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Two int64 arrays of length ``n``, every value >= 1."""
        ...


@dataclass(frozen=True, slots=True)
class FixedLengths:
    """Every request has the same prompt and output length (draws nothing)."""

    prompt_tokens: int
    output_tokens: int

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Constant arrays."""
        return (
            np.full(n, self.prompt_tokens, dtype=np.int64),
            np.full(n, self.output_tokens, dtype=np.int64),
        )


# ------------------------------------------------------------------------------------- config
PREFIX_KINDS = ("multi_turn", "tenants", "rag")
"""Workload kinds whose requests carry prefix-block hashes (``disagg_gym.workload.prefix_workloads``)."""


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    """The request stream: arrival process, request lengths and per-request SLOs.

    Fields marked ``gamma:``, ``time_varying:``, ``fixed:``, ``trace:`` or ``prefix:`` (the
    kinds multi_turn, tenants and rag) are used only with that ``kind`` (or ``lengths``) and
    are ignored otherwise, so a config can switch kinds by overriding ``kind`` alone.
    ``docs/workloads.md`` documents every key.
    """

    kind: Literal["poisson", "gamma", "time_varying", "trace", "multi_turn", "tenants", "rag"] = (
        field(
            default="poisson",
            metadata=spec(
                "arrival process: poisson, gamma (bursty), time_varying, trace replay, or a "
                "prefix workload: multi_turn, tenants, rag"
            ),
        )
    )
    rate_per_s: float = field(
        default=10.0,
        metadata=spec("mean arrival rate, requests/s (time_varying: the base rate)", gt=0),
    )
    cv: float = field(
        default=1.0,
        metadata=spec("gamma: coefficient of variation of inter-arrival times (1 = Poisson)", gt=0),
    )
    rate_profile: Literal["constant", "diurnal", "step", "spike"] = field(
        default="constant", metadata=spec("time_varying: shape of the rate over time")
    )
    period_s: float = field(default=3600.0, metadata=spec("diurnal: period, seconds", gt=0))
    amplitude: float = field(
        default=0.5, metadata=spec("diurnal: relative amplitude of the sine, 0..1", ge=0, le=1)
    )
    step_at_s: float = field(
        default=0.0, metadata=spec("step: time of the step, seconds after the start", ge=0)
    )
    step_factor: float = field(
        default=2.0, metadata=spec("step: rate multiplier from step_at_s on", gt=0)
    )
    spike_at_s: float = field(
        default=0.0, metadata=spec("spike: start of the spike, seconds after the start", ge=0)
    )
    spike_duration_s: float = field(
        default=60.0, metadata=spec("spike: duration of the spike, seconds", gt=0)
    )
    spike_factor: float = field(
        default=3.0, metadata=spec("spike: rate multiplier during the spike", gt=0)
    )
    lengths: str = field(
        default="azure_conv",
        metadata=spec("request lengths: a preset (" + ", ".join(preset_names()) + ")"),
    )
    lengths_after: str | None = field(
        default=None,
        metadata=spec(
            "poisson, gamma, time_varying: request lengths from lengths_switch_at_s on, a "
            "preset or fixed (null: `lengths` throughout)"
        ),
    )
    lengths_switch_at_s: float | None = field(
        default=None,
        metadata=spec(
            "poisson, gamma, time_varying: when lengths_after takes over, seconds after the start",
            ge=0,
        ),
    )
    prompt_tokens: int = field(default=1024, metadata=spec("fixed: prompt tokens", ge=1))
    output_tokens: int = field(default=128, metadata=spec("fixed: output tokens", ge=1))
    max_prompt_tokens: int | None = field(
        default=None, metadata=spec("cap on prompt tokens (longer prompts are clipped)", ge=1)
    )
    max_output_tokens: int | None = field(
        default=None, metadata=spec("cap on output tokens (longer outputs are clipped)", ge=1)
    )
    trace_path: str | None = field(
        default=None, metadata=spec("trace: Azure CSV or Mooncake JSONL file")
    )
    trace_format: Literal["auto", "azure", "mooncake"] = field(
        default="auto", metadata=spec("trace: file format (auto detects it from the content)")
    )
    rate_scale: float = field(
        default=1.0,
        metadata=spec("trace: speed-up; 2 = twice the requests/s (timestamps halved)", gt=0),
    )
    window_start_s: float = field(
        default=0.0,
        metadata=spec("trace: replay rows from this time, seconds after the first row", ge=0),
    )
    window_end_s: float | None = field(
        default=None,
        metadata=spec("trace: ... up to (excluding) this time, seconds after the first row", gt=0),
    )
    on_bad_row: Literal["fail", "skip"] = field(
        default="fail", metadata=spec("trace: a malformed row fails the load, or is skipped")
    )
    loop: bool = field(
        default=False, metadata=spec("trace: replay the (windowed) trace again and again")
    )
    trace_block_tokens: int = field(
        default=MOONCAKE_BLOCK_TOKENS,
        metadata=spec("trace: tokens per block of the trace's hash_ids (Mooncake: 512)", ge=1),
    )
    prefix_block_tokens: int = field(
        default=16, metadata=spec("prefix: tokens per generated prefix-block id", ge=1)
    )
    num_tenants: int = field(
        default=1, metadata=spec("prefix: tenants, each with its own system prompt (a catalog built up front: at most 10^7)", ge=1, le=10_000_000)
    )
    tenant_zipf_s: float = field(
        default=0.0, metadata=spec("prefix: Zipf exponent of tenant popularity (0 = uniform)", ge=0)
    )
    system_prompt_tokens: int = field(
        default=0,
        metadata=spec("prefix: median system-prompt length, tokens (0 = no system prompt)", ge=0),
    )
    system_prompt_sigma: float = field(
        default=0.0,
        metadata=spec("prefix: log-std of system-prompt lengths across tenants (0 = equal)", ge=0),
    )
    user_tokens: float = field(
        default=4752.0,
        metadata=spec("prefix: median user text (first turn, message, question), tokens", gt=0),
    )
    user_sigma: float = field(
        default=1.30, metadata=spec("prefix: log-std of the user text length", ge=0)
    )
    turns_mean: float = field(
        default=1.7, metadata=spec("multi_turn: mean turns per conversation (geometric)", ge=1)
    )
    think_time_s: float = field(
        default=246.0,
        metadata=spec("multi_turn: mean gap between a conversation's turns, seconds", gt=0),
    )
    turn_tokens: float = field(
        default=55.0, metadata=spec("multi_turn: median new user text per later turn, tokens", gt=0)
    )
    turn_sigma: float = field(
        default=3.40, metadata=spec("multi_turn: log-std of the new user text per turn", ge=0)
    )
    num_documents: int = field(
        default=2211, metadata=spec("rag: documents in the catalog (built up front: at most 10^7)", ge=1, le=10_000_000)
    )
    document_zipf_s: float = field(
        default=0.571, metadata=spec("rag: Zipf exponent of document popularity (0 = uniform)", ge=0)
    )
    document_tokens: float = field(
        default=18944.0, metadata=spec("rag: median document length, tokens", gt=0)
    )
    document_sigma: float = field(
        default=0.63, metadata=spec("rag: log-std of document lengths", ge=0)
    )
    slo_ttft_s: float = field(default=1.0, metadata=spec("TTFT SLO base, seconds", gt=0))
    slo_ttft_per_1k_prompt_s: float = field(
        default=0.0, metadata=spec("TTFT SLO added per 1,000 prompt tokens, seconds", ge=0)
    )
    slo_tpot_s: float = field(
        default=0.1, metadata=spec("TPOT SLO, seconds per output token after the first", gt=0)
    )

    def validate(self) -> None:
        """Cross-field checks; raises ``ValueError("key '...': ... (got ...)")``."""
        if self.lengths != "fixed" and self.lengths not in LENGTH_PRESETS:
            raise ValueError(
                f"key 'lengths': unknown length preset; expected one of "
                f"{', '.join(preset_names())} (got {self.lengths!r})"
            )
        if self.lengths_after is not None:
            if self.kind == "trace" or self.kind in PREFIX_WORKLOADS:
                raise ValueError(
                    f"key 'lengths_after': only the kinds poisson, gamma and time_varying switch "
                    f"length presets, not kind {self.kind!r} (got lengths_after {self.lengths_after!r})"
                )
            if self.lengths_after != "fixed" and self.lengths_after not in LENGTH_PRESETS:
                raise ValueError(
                    f"key 'lengths_after': unknown length preset; expected one of "
                    f"{', '.join(preset_names())} (got {self.lengths_after!r})"
                )
            if self.lengths_switch_at_s is None:
                raise ValueError(
                    "key 'lengths_switch_at_s': required when lengths_after is set "
                    f"(got None with lengths_after {self.lengths_after!r})"
                )
        elif self.lengths_switch_at_s is not None:
            raise ValueError(
                "key 'lengths_switch_at_s': only used with lengths_after; set lengths_after to "
                f"the preset that takes over (got {self.lengths_switch_at_s:g} without it)"
            )
        if self.kind == "trace" and not self.trace_path:
            raise ValueError(
                f"key 'trace_path': required when kind is 'trace' (got {self.trace_path!r})"
            )
        if self.kind != "trace" and self.trace_path is not None:
            raise ValueError(
                f"key 'trace_path': only used when kind is 'trace'; set kind: trace to replay it "
                f"(got {self.trace_path!r} with kind {self.kind!r})"
            )
        if self.kind == "tenants" and self.system_prompt_tokens == 0:
            raise ValueError(
                "key 'system_prompt_tokens': kind 'tenants' shares system prompts, so it needs "
                "a positive length (got 0)"
            )
        if self.kind == "gamma":
            if self.cv > MAX_GAMMA_CV:
                raise ValueError(
                    f"key 'cv': expected a value <= {MAX_GAMMA_CV:g} (a larger CV draws inter-arrival "
                    f"gaps that underflow to 0 s, so arrivals stop advancing) (got {self.cv:g})"
                )
            k = 1.0 / (self.cv * self.cv) if self.cv * self.cv > 0 else math.inf
            scale = self.rate_per_s * k
            if not (math.isfinite(k) and 0 < scale < math.inf):
                raise ValueError(
                    f"key 'cv': too small for a gamma process at rate_per_s {self.rate_per_s:g} "
                    f"(its shape 1 / cv**2 overflows) (got {self.cv:g})"
                )
        if self.window_end_s is not None and self.window_end_s <= self.window_start_s:
            raise ValueError(
                f"key 'window_end_s': must be greater than window_start_s={self.window_start_s:g} "
                f"(got {self.window_end_s:g})"
            )

    # ------------------------------------------------------------------ derived components
    def rate_profile_model(self) -> RateProfile:
        """The time_varying rate profile (any kind; ``constant`` for Poisson)."""
        return RATE_PROFILES.get(self.rate_profile)(self)

    def rate_at(self, t_s: np.ndarray) -> np.ndarray:
        """Instantaneous rate of the time_varying profile at ``t_s`` seconds after the start."""
        return self.rate_profile_model().rate_at(np.asarray(t_s, dtype=np.float64))

    def max_rate(self) -> float:
        """Peak rate of the time_varying profile (the thinning envelope)."""
        return self.rate_profile_model().max_rate_per_s

    def length_model(self, name: str | None = None) -> LengthModel:
        """The length sampler for ``name`` (default ``lengths``; a preset's tables are built here)."""
        name = self.lengths if name is None else name
        if name == "fixed":
            return FixedLengths(self.prompt_tokens, self.output_tokens)
        if name not in LENGTH_PRESETS:
            self.validate()  # raises the one-line error
        return LENGTH_PRESETS[name].sampler()

    def cap(self, prompt: np.ndarray, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Applies ``max_prompt_tokens`` / ``max_output_tokens`` (clipping, not rejection)."""
        if self.max_prompt_tokens is not None:
            prompt = np.minimum(prompt, self.max_prompt_tokens)
        if self.max_output_tokens is not None:
            output = np.minimum(output, self.max_output_tokens)
        return prompt, output

    def carries_block_hashes(self) -> bool:
        """Whether this workload's requests carry prefix-block hashes: a prefix kind
        (``multi_turn``, ``tenants``, ``rag``) or a Mooncake JSONL trace. Decided from the config
        and, for ``trace_format: auto``, the trace's first line, as the replay detects the
        format (a Mooncake trace named ``.json`` replayed its hashes while the env's observation
        left the cache features out); a file that cannot be read yet falls back to the name
        (``.jsonl``). The observation layout and the bounds depend on it.
        """
        if self.kind in PREFIX_KINDS:
            return True
        if self.kind == "trace":
            if self.trace_format == "auto" and self.trace_path:
                return _sniffed_format(self.trace_path) == "mooncake"
            return self.trace_format == "mooncake"
        return False

    def slos(self, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-request ``(slo_ttft_s, slo_tpot_s)`` arrays for prompts of ``prompt`` tokens."""
        ttft = self.slo_ttft_s + self.slo_ttft_per_1k_prompt_s * (prompt / 1000.0)
        return ttft.astype(np.float64), np.full(len(prompt), self.slo_tpot_s)

    def build(
        self,
        streams: RngStreams,
        horizon_s: float | None = None,
        max_requests: int | None = None,
        start_s: float = 0.0,
    ) -> ArrivalSource:
        """An arrival source for one run.

        Args:
            streams: Named random streams; ``arrivals`` and ``lengths`` are used.
            horizon_s: Arrivals end before ``start_s + horizon_s`` (seconds).
            max_requests: At most this many arrivals.
            start_s: Absolute simulated time at which the workload starts.

        Returns:
            A ``SyntheticSource``, a ``TraceReplaySource`` (kind ``trace``) or a
            ``PrefixSource`` (kinds ``multi_turn``, ``tenants``, ``rag``).

        Raises:
            ValueError: a synthetic or looping workload without ``horizon_s`` or
                ``max_requests``, bad limits, or an invalid config.
            TraceError: the trace file is missing or malformed.
        """
        self.validate()
        _check_limits(horizon_s, max_requests, start_s)
        if self.kind == "trace":
            data = load_trace(self.trace_path or "", self.trace_format, self.on_bad_row)
            return TraceReplaySource(self, data, horizon_s, max_requests, start_s)
        if (horizon_s is None or math.isinf(horizon_s)) and max_requests is None:
            raise ValueError(
                f"a {self.kind!r} workload is endless: pass horizon_s or max_requests (got neither)"
            )
        if max_requests is None and horizon_s is not None:
            rate = self.max_rate()
            expected = rate * horizon_s
            if not expected <= MAX_EXPECTED_ARRIVALS:
                raise UserError(
                    f"workload: about {expected:.3g} arrivals expected (rate {rate:.3g}/s x horizon "
                    f"{horizon_s:.3g} s), more than the sanity cap of {MAX_EXPECTED_ARRIVALS:.0e}; "
                    "lower the rate (or --rate-scale) or the horizon, or set max_requests"
                )
        if self.kind in PREFIX_WORKLOADS:
            return PrefixSource(
                PREFIX_WORKLOADS.get(self.kind)(self),
                self,
                self.length_model(),
                streams,
                horizon_s,
                max_requests,
                start_s,
                CHUNK_SIZE,
            )
        after = None
        if self.lengths_after is not None and self.lengths_switch_at_s is not None:
            after = (self.lengths_switch_at_s, self.length_model(self.lengths_after))
        return SyntheticSource(
            ARRIVAL_PROCESSES.get(self.kind)(self),
            self.length_model(),
            self,
            streams.get("arrivals"),
            streams.get("lengths"),
            horizon_s,
            max_requests,
            start_s,
            lengths_after=after,
        )


def _check_limits(horizon_s: float | None, max_requests: int | None, start_s: float) -> None:
    if horizon_s is not None and not horizon_s > 0:  # inf is allowed: no time limit
        raise ValueError(f"horizon_s must be a positive number of seconds (got {horizon_s!r})")
    if max_requests is not None and (isinstance(max_requests, bool) or max_requests < 0):
        raise ValueError(f"max_requests must be a non-negative integer (got {max_requests!r})")
    if not math.isfinite(start_s):
        raise ValueError(f"start_s must be finite (got {start_s!r})")


# ------------------------------------------------------------------------------------ sources
class SyntheticSource:
    """Generated arrivals in chunks of at most ``CHUNK_SIZE``.

    Args:
        process: Draws arrival times (from ``arrivals_rng``).
        lengths: Draws (prompt, output) lengths (from ``lengths_rng``).
        cfg: Supplies the caps and SLOs.
        arrivals_rng: The ``arrivals`` stream.
        lengths_rng: The ``lengths`` stream.
        horizon_s: Arrivals end before ``start_s + horizon_s``; ``None`` for no limit.
        max_requests: Arrival count limit; ``None`` for no limit.
        start_s: Absolute time origin of the workload.
        lengths_after: ``(switch_at_s, model)``: arrivals at or after ``switch_at_s`` (relative
            to ``start_s``) draw their lengths from ``model`` instead of ``lengths``; ``None``:
            ``lengths`` throughout. Lengths are drawn in arrival order from the one stream.
    """

    def __init__(
        self,
        process: ArrivalProcess,
        lengths: LengthModel,
        cfg: WorkloadConfig,
        arrivals_rng: np.random.Generator,
        lengths_rng: np.random.Generator,
        horizon_s: float | None,
        max_requests: int | None,
        start_s: float,
        lengths_after: tuple[float, LengthModel] | None = None,
    ) -> None:
        self._process = process
        self._lengths = lengths
        self._after = lengths_after
        self._cfg = cfg
        self._arr = arrivals_rng
        self._len = lengths_rng
        self._clock_s = 0.0  # relative time of the last candidate drawn
        self._pending = np.empty(0)  # drawn, not yet emitted (relative times)
        self._exhausted = False  # the horizon was passed: draw no more
        self._start_s = start_s
        self._end_s = horizon_s if horizon_s is not None else math.inf  # relative
        self._left = max_requests

    def next_chunk(self) -> ArrivalChunk | None:
        """The next chunk of arrivals, or ``None`` once the horizon or count is reached."""
        if self._left == 0:
            return None
        need = CHUNK_SIZE if self._left is None else min(CHUNK_SIZE, self._left)
        parts = [self._pending]
        have = self._pending.size
        while have < need and not self._exhausted:
            # Fixed-size batches make the arrival sequence a function of the seed alone: the
            # first k arrivals are the same whatever the horizon, count or chunking.
            t, self._clock_s = self._process.batch(self._arr, self._clock_s, DRAW_BATCH)
            if self._clock_s >= self._end_s:
                t = t[t < self._end_s]
                self._exhausted = True
            parts.append(t)
            have += t.size
        times = np.concatenate(parts)
        rel, self._pending = times[:need], times[need:]
        if rel.size == 0:
            self._left = 0
            return None
        if self._left is not None:
            self._left -= rel.size
        prompt, output = self._cfg.cap(*self._sample_lengths(rel))
        ttft, tpot = self._cfg.slos(prompt)
        return ArrivalChunk(self._start_s + rel, prompt, output, ttft, tpot, None)

    def _sample_lengths(self, rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(prompt, output) for arrivals at relative times ``rel`` (ascending)."""
        if self._after is None:
            return self._lengths.sample(self._len, rel.size)
        switch_s, after = self._after
        k = int(np.searchsorted(rel, switch_s, side="left"))  # arrivals before the switch
        parts = []
        if k > 0:
            parts.append(self._lengths.sample(self._len, k))
        if k < rel.size:
            parts.append(after.sample(self._len, rel.size - k))
        return (
            np.concatenate([p for p, _ in parts]).astype(np.int64, copy=False),
            np.concatenate([o for _, o in parts]).astype(np.int64, copy=False),
        )

    def __iter__(self) -> Iterator[ArrivalChunk]:
        """Iterates the remaining chunks."""
        while (chunk := self.next_chunk()) is not None:
            yield chunk


class TraceReplaySource:
    """Replays a loaded trace: window, rate scaling, optional looping, caps and limits.

    Rows whose time (seconds after the trace's first row) lies in
    ``[window_start_s, window_end_s)`` are replayed at
    ``start_s + (t - window_start_s) / rate_scale``. With ``loop``, the window repeats every
    ``period`` seconds (the window's length, or the replayed span plus one mean gap when
    ``window_end_s`` is unset), divided by ``rate_scale``.

    Args:
        cfg: Supplies the window, ``rate_scale``, ``loop``, caps and SLOs.
        data: The loaded trace.
        horizon_s: Arrivals end before ``start_s + horizon_s``; ``None`` for no limit.
        max_requests: Arrival count limit; ``None`` for no limit.
        start_s: Absolute time of the window's start.

    Raises:
        ValueError: the window selects no rows, or ``loop`` without a horizon or count.
    """

    def __init__(
        self,
        cfg: WorkloadConfig,
        data: TraceData,
        horizon_s: float | None,
        max_requests: int | None,
        start_s: float,
    ) -> None:
        lo = cfg.window_start_s
        hi = cfg.window_end_s if cfg.window_end_s is not None else math.inf
        rel = data.arrival_s
        idx = np.flatnonzero((rel >= lo) & (rel < hi))
        if idx.size == 0:
            raise UserError(
                f"{data.path}: window [{lo:g}, {hi:g}) s selects no rows "
                f"(the trace spans 0 to {data.span_s:g} s)"
            )
        self._coverage_skips: tuple[str, ...] = ()  # the first few messages
        self._coverage_skipped = 0
        if data.hash_ids is not None:
            kept, self._coverage_skips = _check_hash_coverage(
                data, idx, cfg.trace_block_tokens, cfg.on_bad_row == "skip"
            )
            self._coverage_skipped = idx.size - kept.size
            idx = kept
        self._cfg = cfg
        self._data = data
        self._idx = idx
        self._t = (rel[idx] - lo) / cfg.rate_scale  # relative to start_s, one pass
        if cfg.loop:
            # the largest float is `simulate --trace`'s "no horizon" (no timestamp reaches it)
            if (horizon_s is None or horizon_s >= sys.float_info.max) and max_requests is None:
                raise UserError(
                    "loop: true replays forever: pass horizon_s (simulate --horizon SECONDS) or max_requests"
                )
            if cfg.window_end_s is not None:
                period = (cfg.window_end_s - lo) / cfg.rate_scale
            elif idx.size >= 2:
                span = float(self._t[-1] - self._t[0])
                period = float(self._t[-1]) + span / (idx.size - 1)
            else:
                raise UserError(
                    f"{data.path}: loop needs window_end_s when the window holds one row"
                )
            if period <= 0:
                raise UserError(f"{data.path}: loop period is zero (all rows share one timestamp)")
            if max_requests is None and horizon_s is not None:
                expected = idx.size * (horizon_s / period + 1)
                if not expected <= MAX_EXPECTED_ARRIVALS:
                    raise UserError(
                        f"{data.path}: looping {idx.size} rows every {period:.3g} s over a horizon "
                        f"of {horizon_s:.3g} s is about {expected:.3g} arrivals, more than the "
                        f"sanity cap of {MAX_EXPECTED_ARRIVALS:.0e}; lower rate_scale or the "
                        "horizon, or set max_requests"
                    )
            self._period_s: float | None = period
        else:
            self._period_s = None
        self._start_s = start_s
        self._end_s = horizon_s if horizon_s is not None else math.inf
        self._left = max_requests
        self._pos = 0  # rows replayed so far, across passes
        self._done = max_requests == 0

    def __len__(self) -> int:
        """Rows in one pass of the window (before horizon and count limits)."""
        return int(self._idx.size)

    @property
    def span_s(self) -> float:
        """Seconds from the replay's start to the last arrival of one pass of the window."""
        return float(self._t[-1]) if self._t.size else 0.0

    @property
    def skipped_rows(self) -> int:
        """Bad rows dropped (``on_bad_row: skip``; 0 otherwise): those of the file, and rows
        of the window whose ``hash_ids`` do not cover their prompt at ``trace_block_tokens``.
        """
        return self._data.skipped_rows + self._coverage_skipped

    @property
    def skip_reasons(self) -> tuple[str, ...]:
        """The first few of those rows' messages (``TraceData.skip_reasons`` first)."""
        return (self._data.skip_reasons + self._coverage_skips)[:MAX_SKIP_REASONS]

    def next_chunk(self) -> ArrivalChunk | None:
        """The next chunk of replayed rows (never straddling two passes), or ``None``."""
        if self._done:
            return None
        n = self._idx.size
        pas, i = divmod(self._pos, n)
        if pas > 0 and self._period_s is None:
            self._done = True
            return None
        j = min(n, i + CHUNK_SIZE)
        if self._left is not None:
            j = min(j, i + self._left)
        offset = pas * self._period_s if self._period_s is not None else 0.0
        rel = self._t[i:j] + offset
        if rel.size and rel[-1] >= self._end_s:
            rel = rel[rel < self._end_s]
            self._done = True
            j = i + rel.size
        self._pos += j - i
        if self._left is not None:
            self._left -= j - i
            self._done = self._done or self._left <= 0
        if j == i:
            self._done = True
            return None
        rows = self._idx[i:j]
        prompt, output = self._cfg.cap(
            self._data.prompt_tokens[rows], self._data.output_tokens[rows]
        )
        ttft, tpot = self._cfg.slos(prompt)
        hashes = self._data.hash_ids
        return ArrivalChunk(
            self._start_s + rel,
            prompt.copy(),
            output.copy(),
            ttft,
            tpot,
            [hashes[r] for r in rows.tolist()] if hashes is not None else None,
            self._cfg.trace_block_tokens if hashes is not None else None,
        )

    def __iter__(self) -> Iterator[ArrivalChunk]:
        """Iterates the remaining chunks."""
        while (chunk := self.next_chunk()) is not None:
            yield chunk


def _check_hash_coverage(
    data: TraceData, idx: np.ndarray, block_tokens: int, skip: bool
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Every replayed row with hash ids must cover its prompt (``prefix.cache_block_hashes``).
    A row may carry more ids than its prompt needs (a clipped prompt: the extra ones are
    ignored), but when most rows carry a whole block too many, ``(n - 1) * block >= prompt``,
    the block size is larger than the trace's (every prompt then looked shared: Mooncake's
    conversation trace read at 4,096 tokens per id gave a 23 % hit rate instead of 3 %).

    Returns:
        ``(idx, messages)``: with ``skip``, the rows that do (and one message per row dropped);
        otherwise ``idx`` unchanged and no messages.

    Raises:
        TraceError: a row that does not (naming its file line), unless ``skip`` drops it; with
            ``skip`` too when no row of the window covers its prompt (the block size is wrong).
    """
    hashes = data.hash_ids
    assert hashes is not None
    n = np.fromiter((len(hashes[i]) for i in idx.tolist()), dtype=np.int64, count=idx.size)
    prompt = data.prompt_tokens[idx]
    lines = data.line_numbers

    def where(b: int) -> str:
        i = int(idx[b])
        return f"{data.path}:{int(lines[i])}" if lines is not None else f"{data.path}: row {i + 1}"

    with_ids = np.count_nonzero(n > 0)
    over = np.flatnonzero((n > 0) & ((n - 1) * block_tokens >= prompt))
    if 2 * over.size > with_ids:
        b = int(over[0])
        p = int(prompt[b])
        raise TraceError(
            f"{where(b)}: {int(n[b])} hash_ids of {block_tokens} tokens cover {int(n[b]) * block_tokens} tokens, "
            f"a whole block more than its {p} prompt tokens need ({-(-p // block_tokens)} ids), like {over.size} "
            f"of the {with_ids} rows with hash_ids: workload.trace_block_tokens is larger than the trace's block "
            "size (Mooncake traces: 512)"
        )
    bad = np.flatnonzero((n > 0) & (n * block_tokens < prompt))
    if not bad.size:
        return idx, ()

    def message(b: int) -> str:
        return (
            f"{where(b)}: {int(n[b])} hash_ids of {block_tokens} tokens cover {int(n[b]) * block_tokens} "
            f"tokens, fewer than its {int(prompt[b])} prompt tokens"
        )

    every = bad.size == np.count_nonzero(n > 0)
    if not skip or every:
        raise TraceError(
            f"{message(int(bad[0]))} ({bad.size} such rows); set workload.trace_block_tokens to the "
            "trace's block size (Mooncake traces: 512)"
            + ("" if every else ", or workload.on_bad_row: skip to drop such rows")
        )
    keep = np.ones(idx.size, dtype=bool)
    keep[bad] = False
    return idx[keep], tuple(message(int(b)) for b in bad[:MAX_SKIP_REASONS])
