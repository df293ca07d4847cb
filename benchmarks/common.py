"""Timing helpers shared by the benchmark scripts (JSON lines on stdout)."""

from __future__ import annotations

import json
import platform
import statistics
import time
from datetime import date
from typing import Callable

import jax


def machine() -> dict:
    return {
        "date": date.today().isoformat(),
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "device_kind": jax.devices()[0].device_kind,
        "processor": platform.processor() or platform.machine(),
        "jax": jax.__version__,
    }


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def interleaved(functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, calls interleaved so that machine noise hits all alike.

    Each function must block until its result is ready.
    """
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}
