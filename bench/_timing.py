"""Timing helpers shared by the benchmark scripts: best-of-k wall time and machine facts."""

import os
import platform
import time


def best_time(fn, repeat=5):
    """Smallest wall time of ``repeat`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def machine_summary():
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    flags = " ".join(x for x in ("avx2", "fma", "avx512f") if x in have)
                    break
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {flags}"
