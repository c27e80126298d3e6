"""Python API staples (issue #16, item 8): ``SolveResult.summary()`` and short reprs, ``slam.Prior`` at top
level (and the README snippet that uses it), ``verbose=`` on the drivers, field docs in ``help()``."""

from __future__ import annotations

import dataclasses
import io
import logging
import pydoc
import re
from pathlib import Path

import pytest
import torch

import slam
from slam._docs import attribute_docstrings, document_fields
from slam._verbose import verbose_logging
from slam.optim.termination import Termination

README = Path(__file__).resolve().parents[1] / "README.md"


def _result(n: int, *, converged=None, iterations=None, termination=None) -> slam.SolveResult:
    """A ``SolveResult`` of ``n`` problems with known numbers (cost b+1 -> (b+1)/1000)."""
    converged = torch.ones(n, dtype=torch.bool) if converged is None else torch.as_tensor(converged)
    return slam.SolveResult(
        values={}, cost=torch.arange(1, n + 1, dtype=torch.float64) / 1000,
        initial_cost=torch.arange(1, n + 1, dtype=torch.float64),
        iterations=torch.arange(3, 3 + n) if iterations is None else torch.as_tensor(iterations),
        converged=converged,
        termination=termination or [Termination.FUNCTION_TOLERANCE if c else Termination.MAX_ITERATIONS
                                    for c in converged.tolist()],
        history=[], solve_seconds=0.25)


# ---------------------------------------------------------------- SolveResult.summary() and repr


def test_summary_and_repr_of_one_problem():
    result = _result(1, iterations=[6])
    text = result.summary()
    assert text.splitlines() == ["SolveResult: function tolerance (converged) after 6 iterations, 0.250 s",
                                 "  cost 1.000000e+00 -> 1.000000e-03"]
    assert repr(result) == ("SolveResult(function tolerance, converged, 6 iterations, "
                            "cost 1.000000e+00 -> 1.000000e-03, 0.250 s)")
    failed = _result(1, converged=[False], iterations=[50])
    assert "maximum iterations (not converged) after 50 iterations" in failed.summary()
    assert "not converged" in repr(failed) and str(failed) == repr(failed)


def test_summary_of_a_small_batch_has_a_line_per_problem():
    result = _result(3, converged=[True, False, True])
    lines = result.summary().splitlines()
    assert lines[0] == "SolveResult: 3 problems, 2 of 3 converged, 0.250 s"
    assert lines[1:] == [
        "  problem 0: function tolerance (converged) after 3 iterations, cost 1.000000e+00 -> 1.000000e-03",
        "  problem 1: maximum iterations (not converged) after 4 iterations, cost 2.000000e+00 -> 2.000000e-03",
        "  problem 2: function tolerance (converged) after 5 iterations, cost 3.000000e+00 -> 3.000000e-03",
    ]
    assert repr(result) == ("SolveResult(3 problems, 2/3 converged, 3-5 iterations, "
                            "total cost 6.000000e+00 -> 6.000000e-03, 0.250 s)")


def test_summary_of_a_large_batch_is_compact():
    converged = [b % 10 != 3 for b in range(40)]  # problems 3, 13, 23, 33 hit the iteration limit
    result = _result(40, converged=converged)
    lines = result.summary().splitlines()
    assert len(lines) == 5 and lines[0] == "SolveResult: 40 problems, 36 of 40 converged, 0.250 s"
    assert lines[1] == "  iterations 3-42 (median 22)"
    assert lines[2] == f"  total cost {sum(range(1, 41)):.6e} -> {sum(range(1, 41)) / 1000:.6e}"
    assert lines[3] == "  terminations: 36 function tolerance, 4 maximum iterations"
    assert lines[4] == "  not converged: problems 3, 13, 23, 33"
    assert result.summary(max_problems=2).endswith("problems 3, 13 and 2 more")
    assert len(result.summary(max_problems=40).splitlines()) == 41  # one line per problem again
    assert "\n" not in repr(result) and len(repr(result)) < 120


def test_summary_of_a_real_solve():
    from slam.pgo import synthetic_graph

    problem, _ = synthetic_graph(num_poses=12, num_loop_closures=3)[0].problem()
    result = slam.solve(problem)
    assert bool(result.converged[0])
    text = result.summary()
    assert f"after {int(result.iterations[0])} iterations" in text and result.termination[0].value in text
    assert f"{float(result.initial_cost[0]):.6e} -> {float(result.cost[0]):.6e}" in text
    assert repr(result).startswith(f"SolveResult({result.termination[0]}, converged, ")
    assert "values" not in repr(result) and "\n" not in repr(result)  # never the solution tensors


def test_driver_results_have_one_line_reprs():
    from slam.ba import optimize as bundle_adjust, synthetic_bal
    from slam.pgo import optimize, synthetic_batch, synthetic_graph

    graph, _ = synthetic_graph(num_poses=12, num_loop_closures=3)
    pgo = optimize(graph)
    text = repr(pgo)
    assert "\n" not in text and len(text) < 250 and text.startswith("PgoResult(")
    assert f"12 poses, {graph.num_edges} edges; {pgo.termination}, converged, {pgo.iterations} iterations" in text
    assert f"chi2 {pgo.initial_chi2:.6e} -> {pgo.final_chi2:.6e}" in text
    batch, _ = synthetic_batch(3, num_poses=12, num_loop_closures=3)
    assert "3 x 12 poses" in repr(optimize(batch))
    problem, _ = synthetic_bal(3, 12, seed=4)
    ba = bundle_adjust(problem, max_iterations=2)
    text = repr(ba)
    assert "\n" not in text and text.startswith("BAResult(") and "3 cameras, 12 points, 36 observations" in text
    assert f"{ba.termination}, not converged, 2 iterations, cost {ba.initial_cost:.6e} -> {ba.final_cost:.6e}" in text
    assert isinstance(pgo.summary(), dict) and isinstance(ba.summary(), dict)  # the JSON records stay as they were


# ---------------------------------------------------------------- slam.Prior


def test_prior_is_exported_at_top_level():
    from slam.costs import Prior

    assert slam.Prior is Prior and "Prior" in slam.__all__


def test_readme_snippet_with_a_prior_runs():
    text = README.read_text(encoding="utf-8")
    section = text.split("## slam in fifteen lines", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "slam.Prior(" in code
    namespace: dict[str, object] = {}
    torch.manual_seed(0)
    exec(compile(code.replace("print(", "(lambda *a: None)("), "README.md", "exec"), namespace)
    result, poses, truth = namespace["result"], namespace["poses"], namespace["truth"]
    assert bool(result.converged[0])
    assert float(result[poses][49:].local(truth[49:]).norm()) < 0.5  # the prior holds the last pose near the truth


# ---------------------------------------------------------------- verbose=


@pytest.fixture
def clean_slam_logger():
    """The ``slam`` logger as an application that never configured logging leaves it; restored after."""
    logger = logging.getLogger("slam")
    saved = logger.level, logger.propagate, list(logger.handlers)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True
    logger.handlers.clear()
    yield logger
    logger.setLevel(saved[0])
    logger.propagate = saved[1]
    logger.handlers[:] = saved[2]


def _state(logger: logging.Logger):
    return logger.level, logger.propagate, list(logger.handlers), logging.getLogger().handlers[:]


ITERATION = re.compile(r"^iter +\d+  chi2 ", re.M)  # the drivers report chi2 (slam.optim.callbacks)


def test_verbose_drivers_print_iterations_to_stderr_and_leave_no_handler(capsys, clean_slam_logger):
    from slam.ba import optimize as bundle_adjust, synthetic_bal
    from slam.pgo import optimize, synthetic_graph

    graph, _ = synthetic_graph(num_poses=12, num_loop_closures=3)
    before = _state(clean_slam_logger)
    optimize(graph)
    assert capsys.readouterr().err == ""  # quiet by default
    result = optimize(graph, verbose=True)
    err = capsys.readouterr().err
    assert len(ITERATION.findall(err)) == len(result.history) > 0
    assert f"solve: {result.termination} after {result.iterations} iterations" in err and "problem 0" not in err
    assert _state(clean_slam_logger) == before
    assert not clean_slam_logger.isEnabledFor(logging.INFO)
    optimize(graph, verbose=False)
    assert capsys.readouterr().err == ""
    problem, _ = synthetic_bal(3, 12, seed=4)
    ba = bundle_adjust(problem, max_iterations=3, verbose=True)
    assert len(ITERATION.findall(capsys.readouterr().err)) == len(ba.history) == 3
    assert _state(clean_slam_logger) == before


def test_verbose_restores_the_logger_when_the_call_raises(capsys, clean_slam_logger):
    from slam.pgo import optimize, synthetic_graph

    graph, _ = synthetic_graph(num_poses=12, num_loop_closures=3)
    before = _state(clean_slam_logger)
    with pytest.raises(ValueError, match="optimizer"):
        optimize(graph, verbose=True, optimizer="newton")
    assert _state(clean_slam_logger) == before


def test_verbose_does_not_duplicate_lines_where_logging_is_configured(capsys, clean_slam_logger):
    from slam.pgo import optimize, synthetic_graph

    graph, _ = synthetic_graph(num_poses=12, num_loop_closures=3)
    # The application logs slam at INFO to its own handler: verbose changes nothing, each line once.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    clean_slam_logger.addHandler(handler)
    clean_slam_logger.setLevel(logging.INFO)
    result = optimize(graph, verbose=True)
    assert capsys.readouterr().err == ""
    assert len(ITERATION.findall(stream.getvalue())) == len(result.history) > 0
    assert clean_slam_logger.handlers == [handler]


def test_verbose_keeps_warnings_going_to_the_applications_handlers(capsys, clean_slam_logger):
    # Like logging.basicConfig() at WARNING: a root handler that takes everything the loggers pass it.
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    try:
        with verbose_logging():
            logging.getLogger("slam.pgo").info("an info line")
            logging.getLogger("slam").warning("a warning")
        logging.getLogger("slam").info("after the block")
    finally:
        root.removeHandler(handler)
    err = capsys.readouterr().err
    assert err.count("an info line") == 1 and "a warning" not in err and "after the block" not in err
    assert stream.getvalue().count("a warning") == 1 and "info line" not in stream.getvalue()


def test_verbose_is_a_keyword_of_both_drivers():
    import inspect

    from slam.ba import optimize as bundle_adjust
    from slam.pgo import optimize

    for driver in (optimize, bundle_adjust):
        parameter = inspect.signature(driver).parameters["verbose"]
        assert parameter.default is False and parameter.kind is inspect.Parameter.KEYWORD_ONLY
        assert "verbose=True" in driver.__doc__


# ---------------------------------------------------------------- field docs in help()


def _help(cls: type) -> str:
    return pydoc.render_doc(cls, renderer=pydoc.plaintext)


@pytest.mark.parametrize("cls, field, sentence", [
    (slam.LevenbergMarquardt, "max_iterations", "Upper bound on iterations (linearizations)."),  # inherited
    (slam.LevenbergMarquardt, "min_damping_decrease", "The most an accepted step may divide λ by"),
    (slam.GaussNewton, "gradient_tolerance", "Converged when ``max |Jᵀr| <=`` this."),
    (slam.Dogleg, "initial_radius", "Δ₀ in tangent units"),
    (slam.Implicit, "tolerance", "CG's relative residual on the exact system"),
    (slam.SolveResult, "converged", "a tolerance was met"),
    (slam.IterationRecord, "damping", "used for this iteration's step"),
])
def test_help_shows_each_fields_docstring(cls, field, sentence):
    text = _help(cls)
    assert "Attributes:" in text and sentence in text
    line = next(line for line in text.splitlines() if re.match(rf"^ \|\s+{field} \(", line))
    assert "default" in line or cls in (slam.SolveResult, slam.IterationRecord)


def test_help_lists_every_field_of_every_config():
    for cls in (slam.GaussNewton, slam.LevenbergMarquardt, slam.Dogleg, slam.Truncated, slam.Implicit):
        text = _help(cls)
        for field in dataclasses.fields(cls):  # new fields (e.g. Implicit.products) included
            assert re.search(rf"^ \|\s+{field.name} \(", text, re.M), (cls.__name__, field.name)
    assert _help(slam.Truncated).count("iterations (int, default: 3)") == 1


@document_fields
@dataclasses.dataclass(frozen=True)
class _Base:
    """A base."""

    size: int = 3
    """How many.

    Over two paragraphs."""
    name: str = "x"


@document_fields
@dataclasses.dataclass(frozen=True)
class _Child(_Base):
    name: str = "y"
    """The child's own doc."""
    items: list = dataclasses.field(default_factory=list)
    flag: bool = False  # a comment is no docstring


def test_document_fields_helper():
    assert attribute_docstrings(_Base) == {"size": "How many.\n\nOver two paragraphs."}
    doc = _Child.__doc__
    assert doc.startswith("_Child(size: 'int' = 3")  # the dataclass's own signature line is kept
    assert "    size (int, default: 3):\n        How many.\n\n        Over two paragraphs." in doc  # inherited
    assert "    name (str, default: 'y'): The child's own doc." in doc
    assert "    items (list, default: list())" in doc
    assert doc.endswith("    flag (bool, default: False)")
    assert _Base.__doc__.startswith("A base.\n\nAttributes:\n")

    @document_fields
    @dataclasses.dataclass
    class Local:
        value: float = 1.0
        """A local class's field (found through ``inspect.getsource``)."""

    assert "value (float, default: 1.0): A local class's field" in Local.__doc__
    with pytest.raises(TypeError, match="dataclass"):
        document_fields(int)
