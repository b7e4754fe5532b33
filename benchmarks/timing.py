"""Shared by the in-process benchmarks: interleaved timing."""

from __future__ import annotations

import statistics
import time


def medians(fns: dict, repeat: int) -> dict:
    """Median time of each function, run round-robin so machine noise hits all alike."""
    for fn in fns.values():
        fn()  # warm-up: first allocations, lazy imports
    times: dict = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
