"""GTSAM's Levenberg-Marquardt timed the way every benchmark here times it (imported by ``pgo.py`` and
``ba.py``; gtsam is imported by the caller, so this module needs nothing at import)."""

from __future__ import annotations

import statistics
import time


def timed_levenberg_marquardt(graph, initial, *, max_iterations: int, repeats: int):  # type: ignore[no-untyped-def]
    """Median seconds over ``repeats`` runs of constructing and running ``LevenbergMarquardtOptimizer``
    (relative error tolerance 1e-6), the last run's result ``Values`` and its iteration count."""
    import gtsam

    params = gtsam.LevenbergMarquardtParams()
    params.setMaxIterations(max_iterations)
    params.setRelativeErrorTol(1e-6)
    times, result, iterations = [], None, 0
    for _ in range(repeats):
        start = time.perf_counter()
        optimizer = gtsam.LevenbergMarquardtOptimizer(graph, initial, params)
        result = optimizer.optimize()
        times.append(time.perf_counter() - start)
        iterations = optimizer.iterations()
    return statistics.median(times), result, iterations
