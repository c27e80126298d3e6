"""The ``slam`` command: ``slam pgo [FILE]``, ``slam ba FILE``, ``slam eval EST GT``, ``slam view FILE``.

``slam pgo`` reads a g2o/TORO pose graph (default: the bundled ``data/intel.g2o``), runs
Levenberg-Marquardt on the sparse solver with one log line per iteration, and writes the
optimized graph, its trajectory as TUM text, a PNG of initial vs optimized trajectory and
a JSON summary, by default into ``slam-output/<name>/``.  ``slam ba`` does the same for a BAL
bundle-adjustment problem: the adjusted BAL file, a PNG and a PLY of points and cameras, and the
JSON summary (costs are ½ Σ ρ(‖r‖²) in pixels², as Ceres reports them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch

from .io.files import StagedOutputs

log = logging.getLogger("slam")

DATA = Path(__file__).resolve().parent.parent / "data"
DEFAULT_GRAPH = DATA / "intel.g2o"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slam", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and the final summary")
    commands = parser.add_subparsers(dest="command", required=True)

    pgo = commands.add_parser("pgo", help="optimize a pose graph (g2o / TORO)")
    pgo.add_argument("file", nargs="?", default=str(DEFAULT_GRAPH), help=f"pose graph (default: {DEFAULT_GRAPH})")
    pgo.add_argument("--init", choices=["file", "odometry", "chordal"], default="file")
    pgo.add_argument("--max-iterations", type=_count, default=100)
    pgo.add_argument("--optimizer", choices=["lm", "dogleg", "gn"], default="lm",
                     help="Levenberg-Marquardt (default), Powell's dogleg or Gauss-Newton")
    pgo.add_argument("--robust", metavar="KERNEL:SCALE", type=_robust, help="e.g. huber:1.0, cauchy:0.5 (on each edge's chi)")
    pgo.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    pgo.add_argument("--device", default="cpu")
    pgo.add_argument("--output-dir", type=Path, help="where outputs go (default: slam-output/<name>/)")
    pgo.add_argument("--out", type=Path, help="optimized graph (.g2o)")
    pgo.add_argument("--tum", type=Path, help="optimized trajectory as TUM text (timestamp = vertex id)")
    pgo.add_argument("--png", type=Path, help="plot of initial vs optimized trajectory")
    pgo.add_argument("--json", type=Path, help="summary (chi2, iterations, times, sizes)")
    pgo.add_argument("--progress", action="store_true", help="show a progress bar")

    ba = commands.add_parser("ba", help="bundle adjustment of a BAL problem (plain or .bz2)")
    ba.add_argument("file")
    ba.add_argument("--max-iterations", type=_count, default=50)
    ba.add_argument("--robust", metavar="KERNEL:SCALE", type=_robust, help="e.g. huber:1.0, cauchy:1.0 (on each pixel error)")
    ba.add_argument("--fix-intrinsics", action="store_true", help="keep f, k1, k2 as read")
    ba.add_argument("--linear-solver", choices=["schur", "iterative-schur", "cholmod", "dense"], default="schur",
                    help="schur: points eliminated, reduced system by Cholesky (default); iterative-schur: "
                         "by block-Jacobi PCG; cholmod/dense: the full system")
    ba.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ba.add_argument("--device", default="cpu")
    ba.add_argument("--output-dir", type=Path, help="where outputs go (default: slam-output/<name>/)")
    ba.add_argument("--out", type=Path, help="adjusted problem (BAL text)")
    ba.add_argument("--png", type=Path, help="plot of the adjusted points and cameras")
    ba.add_argument("--ply", type=Path, help="adjusted points and camera centres as a PLY point cloud")
    ba.add_argument("--json", type=Path, help="summary (costs, iterations, time, sizes)")
    ba.add_argument("--progress", action="store_true", help="show a progress bar")

    evaluate = commands.add_parser("eval", help="ATE / RPE of a trajectory against ground truth (TUM or KITTI)",
                                   description=_EVAL_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.error = _one_line_error(evaluate)  # type: ignore[method-assign]
    evaluate.add_argument("estimate")
    evaluate.add_argument("reference")
    evaluate.add_argument("--align", choices=["se3", "sim3", "se2", "none"], default="se3",
                          help="Umeyama alignment of the estimate onto the reference before APE and RPE: se3 "
                               "(default; evo -a), sim3 (with scale; evo -as), se2 (about z, in x-y), none (evo's default)")
    evaluate.add_argument("--pose-relation", choices=_POSE_RELATIONS, default="trans", metavar="RELATION",
                          help="what APE and RPE measure of each error pose E: trans (evo trans_part: metres; the "
                               "default, reported as ATE/RPE translation with RPE rotation), rot (evo angle_deg, or "
                               "angle_rad with --angle-unit rad: the rotation angle), full (evo full: |E - I4|_F), "
                               "rot_part (evo rot_part: |R(E) - I3|_F); evo's names are accepted too")
    evaluate.add_argument("--angle-unit", choices=["deg", "rad"],
                          help="unit of --pose-relation rot: deg (default, evo angle_deg) or rad (evo angle_rad)")
    evaluate.add_argument("--delta", type=_positive_number, default=1.0, metavar="N",
                          help="RPE pair distance in --delta-unit (evo --delta; default 1)")
    evaluate.add_argument("--delta-unit", choices=["f", "m", "d", "r"], default="f",
                          help="evo's letters: f frames (default), m metres travelled, d degrees or r radians turned")
    evaluate.add_argument("--all-pairs", action="store_true",
                          help="RPE over all pairs at distance delta (within 10%% for m, d, r), not consecutive ones "
                               "(evo --all_pairs)")
    evaluate.add_argument("--max-diff", type=_non_negative_number, default=0.01, metavar="SECONDS",
                          help="largest timestamp difference of associated TUM poses (evo --t_max_diff; default 0.01)")
    evaluate.add_argument("--plot", type=Path, metavar="OUT.png|.pdf|.svg",
                          help="the trajectories after alignment and the APE over time, as evo_ape --plot shows")
    evaluate.add_argument("--json", type=Path, help="the figures and per-pose errors as JSON")

    view = commands.add_parser("view", help="show a pose graph in Open3D (or render it to a PNG)")
    view.add_argument("file")
    view.add_argument("--png", type=Path, help="render headless to this PNG instead of opening a window")
    view.add_argument("--ply", type=Path, help="also save <prefix>_edges.ply and <prefix>_frames.ply")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    user_errors = _user_errors()
    try:
        return {"pgo": _pgo, "ba": _ba, "eval": _eval, "view": _view}[args.command](args)
    except KeyboardInterrupt:
        print(f"slam {args.command}: interrupted", file=sys.stderr)
        return 130
    except user_errors as error:  # bad input or environment: one clear line, no traceback
        print(f"slam {args.command}: error: {_about_input(args, _one_line(error))}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug of ours: still one line, the traceback on request
        if os.environ.get("SLAM_TRACEBACK"):
            raise
        print(f"slam {args.command}: internal error: {type(error).__name__}: {_one_line(error)} "
              "(set SLAM_TRACEBACK=1 for the traceback)", file=sys.stderr)
        return 1


def _count(text: str) -> int:
    """An option value that must be a non-negative integer (argparse reports it as a usage error)."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def _robust(text: str):  # type: ignore[no-untyped-def]
    """``--robust KERNEL:SCALE`` as a loss, checked while the options are parsed."""
    from .robust import parse_robust

    try:
        return parse_robust(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user's input or machine can cause, each reported as one line with exit code 2:
    malformed files and options (ValueError, which FormatError, OutputPathError and
    DisconnectedGraphError are), non-finite costs, singular systems, unreadable or unwritable
    files (OSError), ids out of range (OverflowError), truncated streams (EOFError), no display
    to render on (RenderError) and a missing optional package (ModuleNotFoundError)."""
    from .optim.gauss_newton import SingularSystemError
    from .problem import NonFiniteError
    from .viz import RenderError

    return (ValueError, OSError, OverflowError, EOFError, NonFiniteError, SingularSystemError, RenderError,
            ModuleNotFoundError)


def _about_input(args: argparse.Namespace, message: str) -> str:
    """``message``, led by the input it is about when it names no file itself (a solver's
    non-finite cost, an alignment that fails, a disconnected graph)."""
    inputs = [getattr(args, name) for name in ("file", "estimate", "reference") if getattr(args, name, None)]
    if not inputs or any(str(p) in message or Path(p).name in message for p in inputs) or message.startswith("--"):
        return message
    return f"{' vs '.join(map(str, inputs))}: {message}"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _check_device(device: str) -> torch.device:
    """The ``--device`` as a torch.device, refused before any work when this machine lacks it."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r}: not a device (cpu, cuda, cuda:N, mps)") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {device}: this machine has no CUDA device (torch {torch.__version__} "
                             f"{'built without CUDA' if torch.version.cuda is None else 'sees none'}); use --device cpu")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"--device {device}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    elif parsed.type != "cpu":
        raise ValueError(f"--device {device}: unsupported device type {parsed.type!r} (cpu, cuda, cuda:N, mps)")
    return parsed


def _pgo(args: argparse.Namespace) -> int:
    from .io import read_g2o, write_g2o, write_tum
    from .pgo import optimize
    device = _check_device(args.device)
    loss = args.robust
    stem = Path(args.file).stem
    with _outputs(args, stem, {"out": "_optimized.g2o", "tum": "_optimized.tum", "png": ".png", "json": ".json"},
                  inputs=[args.file]) as staged:
        start = time.perf_counter()
        graph = read_g2o(args.file)
        log.info("%s (read in %.2f s)", graph.describe(), time.perf_counter() - start)
        result = optimize(graph, init=args.init, max_iterations=args.max_iterations, loss=loss,
                          dtype=getattr(torch, args.dtype), device=device, progress=args.progress,
                          optimizer=args.optimizer)
        optimized = result.graph.to(dtype=torch.float64, device="cpu")

        write_g2o(staged["out"], optimized)
        write_tum(staged["tum"], _trajectory(optimized))
        from .viz import plot_trajectories

        initial = graph.poses if args.init == "file" else None
        trajectories = {"initial": initial, "optimized": optimized.poses} if initial is not None else {
            "optimized": optimized.poses}
        plot_trajectories(staged["png"], trajectories, edges=(optimized.i, optimized.j),
                          title=f"{stem}: chi2 {result.initial_chi2:.4g} -> {result.final_chi2:.4g}")
        _write_json(staged["json"], result.summary() | {"outputs": _names(staged)})
    _report(staged, f"{stem}: chi2 {result.initial_chi2:.6e} -> {result.final_chi2:.6e} in {result.iterations} "
                    f"iterations ({result.termination}), solve {result.solve_seconds:.3f} s, "
                    f"init {result.init_seconds:.3f} s")
    return 0 if result.converged else 1


class _Outputs(StagedOutputs):
    """``StagedOutputs`` that also removes the default output folder when it made it and the run failed."""

    def __init__(self, outputs: dict[str, Path], inputs: list[str], made: list[Path]):
        self.made = made
        try:
            super().__init__(outputs, inputs)
        except BaseException:
            self._remove_made()
            raise

    def _remove_made(self) -> None:
        for folder in reversed(self.made):
            try:
                folder.rmdir()  # only if still empty
            except OSError:
                pass

    def __exit__(self, kind, error, traceback) -> None:  # type: ignore[no-untyped-def]
        super().__exit__(kind, error, traceback)
        if kind is not None:
            self._remove_made()


def _outputs(args: argparse.Namespace, stem: str, suffixes: dict[str, str], inputs: list[str]) -> _Outputs:
    """Each output's path, checked before any work: its option if given, else ``<stem><suffix>`` in
    ``--output-dir`` (default ``slam-output/<stem>/``, created; removed again if the run fails and
    it is still empty).  Outputs are written to temporaries and renamed into place at the end."""
    outdir = args.output_dir or Path("slam-output") / stem
    made: list[Path] = []
    if any(getattr(args, key) is None for key in suffixes):
        if outdir.exists() and not outdir.is_dir():
            raise ValueError(f"--output-dir {outdir}: exists and is not a directory")
        for folder in reversed([outdir, *outdir.parents]):
            if not folder.exists():
                folder.mkdir()
                made.append(folder)
    paths = {key: getattr(args, key) or outdir / f"{stem}{suffix}" for key, suffix in suffixes.items()}
    return _Outputs(paths, inputs, made)


def _names(staged: StagedOutputs) -> dict[str, str]:
    return {key: str(path) for key, path in staged.outputs.items()}


def _write_json(path: Path, summary: dict) -> None:
    """The summary as JSON; a non-finite number (which a finished solve should never hold) is
    written as null, named under ``non_finite`` and in a warning, never as bare NaN/Infinity."""
    from .optim.result import json_safe

    safe = json_safe(summary)
    for name in safe.get("non_finite", []):
        log.warning("warning: %s is not finite; written as null", name)
    path.write_text(json.dumps(safe, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _report(staged: StagedOutputs, line: str) -> None:
    """Print the result line and where each output went."""
    print(line)
    for key, path in staged.outputs.items():
        print(f"  {key:>4}: {path}")


def _ba(args: argparse.Namespace) -> int:
    from .ba import optimize
    from .io import read_bal, write_bal
    device = _check_device(args.device)
    loss = args.robust
    stem = Path(args.file).name.split(".")[0]
    with _outputs(args, stem, {"out": "_adjusted.txt", "png": ".png", "ply": ".ply", "json": ".json"},
                  inputs=[args.file]) as staged:
        start = time.perf_counter()
        problem = read_bal(args.file)
        log.info("%s (read in %.2f s)", problem.describe(), time.perf_counter() - start)
        result = optimize(problem, max_iterations=args.max_iterations, loss=loss, fix_intrinsics=args.fix_intrinsics,
                          linear_solver=args.linear_solver, dtype=getattr(torch, args.dtype), device=device,
                          progress=args.progress)
        adjusted = result.problem
        write_bal(staged["out"], adjusted)
        from .viz import plot_scene, save_scene_ply

        plot_scene(staged["png"], adjusted.points, adjusted.poses(),
                   title=f"{stem}: cost {result.initial_cost:.4g} -> {result.final_cost:.4g}")
        save_scene_ply(staged["ply"], adjusted.points, adjusted.poses())
        _write_json(staged["json"], result.summary() | {"outputs": _names(staged)})
    _report(staged, f"{stem}: cost {result.initial_cost:.6e} -> {result.final_cost:.6e} in {result.iterations} "
                    f"iterations ({result.termination}), solve {result.solve_seconds:.3f} s")
    return 0 if result.converged else 1


def _trajectory(graph):  # type: ignore[no-untyped-def]
    """The graph's poses as a TUM trajectory (SE(2) lifted to z = 0), vertex ids as timestamps."""
    from liegeo import SE2, SE3

    from .io import Trajectory

    poses = graph.poses
    if graph.group is SE2:
        xytheta = poses.xytheta()
        half = 0.5 * xytheta[:, 2]
        zero = torch.zeros_like(half)
        data = torch.stack([xytheta[:, 0], xytheta[:, 1], zero, zero, zero, half.sin(), half.cos()], dim=-1)
        poses = SE3(data)
    return Trajectory(timestamps=graph.ids.to(torch.float64), poses=poses)


_EVAL_DESCRIPTION = """\
APE (after --align) and RPE of the estimate against the reference, with evo's definitions
(evo_ape / evo_rpe give the same figures for the same options). Files are TUM (timestamps,
associated within --max-diff) or KITTI (paired by index). A warning says when the two lie in
different coordinate planes (a 2D graph's TUM output is x-y, KITTI's camera frame x-z)."""

_POSE_RELATIONS = {"trans": ("trans", None), "rot": ("rot", None), "full": ("full", None),
                   "rot_part": ("rot_part", None), "trans_part": ("trans", None), "angle_deg": ("rot", "deg"),
                   "angle_rad": ("rot", "rad")}
"""``--pose-relation`` values, ours and evo's: (our relation, the angle unit the name implies)."""

_PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def _one_line_error(parser: argparse.ArgumentParser):  # type: ignore[no-untyped-def]
    """An ``error`` for ``parser`` that reports a bad option as one line on stderr (exit code 2),
    as input errors are, instead of argparse's usage block."""

    def error(message: str):  # type: ignore[no-untyped-def]
        parser.exit(2, f"{parser.prog}: error: {_one_line(ValueError(message))} (see {parser.prog} --help)\n")

    return error


def _positive_number(text: str) -> float:
    value = _finite_number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative_number(text: str) -> float:
    value = _finite_number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _finite_number(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _eval(args: argparse.Namespace) -> int:
    from .metrics import DELTA_UNITS, check_delta, evaluate, format_report

    relation, implied_unit = _POSE_RELATIONS[args.pose_relation]
    if implied_unit and args.angle_unit and args.angle_unit != implied_unit:
        raise ValueError(f"--pose-relation {args.pose_relation} is in {implied_unit}, not --angle-unit {args.angle_unit}")
    if args.angle_unit and relation != "rot":
        raise ValueError(f"--angle-unit is for --pose-relation rot, not {args.pose_relation}")
    unit = DELTA_UNITS[args.delta_unit]
    try:
        delta = check_delta(args.delta, unit)
    except ValueError as error:
        raise ValueError(f"--delta {args.delta:g} --delta-unit {args.delta_unit}: {error}") from None
    if args.plot and args.plot.suffix.lower() not in _PLOT_SUFFIXES:
        raise ValueError(f"--plot {args.plot}: the file name must end in {', '.join(_PLOT_SUFFIXES)}")
    outputs = {key: getattr(args, key) for key in ("json", "plot") if getattr(args, key)}
    with StagedOutputs(outputs, inputs=[args.estimate, args.reference]) as staged:
        result = evaluate(args.estimate, args.reference, align=args.align, max_difference=args.max_diff, delta=delta,
                          unit=unit, all_pairs=args.all_pairs, pose_relation=relation,
                          angle_unit=implied_unit or args.angle_unit or "deg", return_poses=bool(args.plot))
        matched = result.pop("matched", None)
        if args.plot:
            from .viz.eval_plot import plot_evaluation

            plot_evaluation(staged["plot"], result, matched)
        if args.json:
            _write_json(staged["json"], result)
    print(format_report(result))
    for key, path in staged.outputs.items():
        print(f"  {key:>4}: {path}")
    return 0


def _view(args: argparse.Namespace) -> int:
    from .io import read_g2o
    from .viz import graph_geometry, ply_paths, render_png, save_ply_files, show

    outputs: dict[str, Path] = {"png": args.png} if args.png else {}
    if args.ply:
        outputs["ply edges"], outputs["ply frames"] = ply_paths(args.ply)
    with StagedOutputs(outputs, inputs=[args.file]) as staged:
        graph = read_g2o(args.file)
        geometries = graph_geometry(graph.poses, graph.i, graph.j)
        if args.ply:
            save_ply_files(staged["ply edges"], staged["ply frames"], *geometries)
        if args.png:
            render_png(staged["png"], list(geometries))
        else:
            show(list(geometries))
    for path in staged.outputs.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
