"""Observers that turn cluster hooks into per-request records and KPI summaries."""

from disagg_gym.metrics.chrome_trace import ChromeTrace, TimelineObserver
from disagg_gym.metrics.recorder import LogHistogram, Recorder
from disagg_gym.metrics.summary import summarize

__all__ = ["ChromeTrace", "LogHistogram", "Recorder", "TimelineObserver", "summarize"]
