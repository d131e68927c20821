"""Hooks on the steps (extract, normalize, load) of one dlt pipeline, while a block runs.

dlt calls its tracking modules (`dlt.pipeline.trace.TRACKING_MODULES`) as each step of any
pipeline in the process starts and ends; `StepHooks` hears only its own pipeline's steps.
The loader uses them to size DuckDB's memory as a load starts (`duckdb_memory`) and to report
queries `loading` and `loaded` (`loader.reporting_dlt_steps`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class StepHooks:
    """Override `step_started` and `step_ended`; the rest is dlt's tracking-module interface."""

    def __init__(self, pipeline_name: str) -> None:
        self.pipeline_name = pipeline_name

    def step_started(self, step: str, pipeline: Any) -> None:
        pass

    def step_ended(self, step: str, pipeline: Any, *, failed: bool) -> None:
        pass

    def on_start_trace(self, trace: Any, step: str, pipeline: Any) -> None:
        pass

    def on_start_trace_step(self, trace: Any, step: str, pipeline: Any) -> None:
        if pipeline.pipeline_name == self.pipeline_name:
            self.step_started(step, pipeline)

    def on_end_trace_step(
        self, trace: Any, step: Any, pipeline: Any, step_info: Any, send_state: bool
    ) -> None:
        if pipeline.pipeline_name == self.pipeline_name:
            self.step_ended(step.step, pipeline, failed=step.step_exception is not None)

    def on_end_trace(self, trace: Any, pipeline: Any, send_state: bool) -> None:
        pass


@contextlib.contextmanager
def following_dlt_steps(hooks: StepHooks) -> Iterator[None]:
    """Let `hooks` hear dlt's steps for the duration of the block."""
    from dlt.pipeline import trace

    trace.TRACKING_MODULES.append(hooks)
    try:
        yield
    finally:
        trace.TRACKING_MODULES.remove(hooks)
