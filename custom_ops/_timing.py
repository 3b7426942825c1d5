"""Timing candidates on their real arguments: how the fused kernels (:mod:`custom_ops.fused`) choose
between a compiled variant and the eager formulas, and conv2d's backward (:mod:`custom_ops.conv_routes`)
between its gradient routes, on the first call of each signature."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch


def best_times(calls: dict[str, Callable[[], Any]], cuda: bool, timed: int, untimed: int) -> dict[str, float]:
    """Seconds of the fastest of ``timed`` calls of each of ``calls``, taken in turns after ``untimed``
    calls of each (first calls pay for allocator warm-up and lazy initialisation).

    On one CPU thread the calls are timed by that thread's CPU time, which other processes sharing the cores
    do not inflate; else by the wall clock, on CUDA with the device synchronised around each call.
    """
    clock = time.thread_time if not cuda and torch.get_num_threads() == 1 else time.perf_counter
    for call in calls.values():
        for _ in range(untimed):
            call()
    best = dict.fromkeys(calls, math.inf)
    for _ in range(timed):
        for name, call in calls.items():
            if cuda:
                torch.cuda.synchronize()
            start = clock()
            call()
            if cuda:
                torch.cuda.synchronize()
            best[name] = min(best[name], clock() - start)
    return best
