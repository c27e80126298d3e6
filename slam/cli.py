"""The slam command: slam pgo [FILE], slam ba FILE, slam eval EST GT, slam view FILE.

slam pgo reads a g2o/TORO pose graph (default: the bundled intel.g2o), runs Levenberg-Marquardt
with one log line per iteration, and writes the optimized graph, the initial and the optimized
trajectory as TUM text, a PNG of the initial vs optimized trajectory and a JSON summary, by
default into slam-output/<name>/.  slam ba does the same for a BAL bundle-adjustment problem:
the adjusted BAL file, a PNG and a PLY of points and cameras, and the JSON summary.

One quantity, one name: the iteration lines, the final line and the JSON report
chi2 = the sum of the squared whitened residuals (a pose graph's sum of e' Omega e, g2o's chi2;
bundle adjustment's sum of squared pixel errors, twice Ceres' cost).  With --robust the solver
lowers the robust chi2 = the sum of rho(squared whitened residual), labelled so in the iteration
lines and given beside chi2 in the final line and the JSON.  The JSON also records the command
line, every solver setting, the library versions and the input's sha256, so that a run can be
repeated from it.

Exit codes:
  0    the work ran: converged, or stopped at --max-iterations (a warning line says so; g2o also exits 0)
  1    internal error, a bug of ours: one line (-v or SLAM_TRACEBACK=1 shows the traceback)
  2    usage, input or environment error, as one line, before any work where it can be known then:
       a bad option, a missing, malformed or directory input, an output in a missing or unwritable
       folder, a --device this machine lacks, no display for slam view, a dense solve over its
       memory budget (--dense-memory-budget, SLAM_DENSE_MEMORY_BUDGET, default 4GiB)
  3    did not converge: the solve stopped for another reason (no decrease possible at the largest
       damping or the smallest trust region, the linear solver failed, a rank-deficient
       Gauss-Newton system); the outputs are written, and a warning line names the reason
  130  interrupted (Ctrl-C)
  141  standard output closed early (slam eval ... | head): silent, as for tools stopped by SIGPIPE
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .io.files import OutputPathError, StagedOutputs

log = logging.getLogger("slam")

DATA = Path(__file__).resolve().parent / "data"  # package data (slam.data): installed with the wheel
DEFAULT_GRAPH = DATA / "intel.g2o"

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_NOT_CONVERGED = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141
"""The exit codes of the table in the module docstring (``slam --help`` shows it)."""

_DESCRIPTION = __doc__[:__doc__.index("Exit codes:")].rstrip()
_EPILOG = __doc__[__doc__.index("Exit codes:"):]


class UsageError(ValueError):
    """A bad option or environment (not the input's content): reported as one line, exit code 2,
    without the input's name in front."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (the exit-code table), option help wrapped."""


def build_parser() -> argparse.ArgumentParser:
    """The ``slam`` parser: every option with help text that states its default."""
    parser = argparse.ArgumentParser(prog="slam", description=_DESCRIPTION, epilog=_EPILOG, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"slam (liegeo-slam) {__version__}",
                        help="print the version and exit")
    _verbosity(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    _verbosity(common, default=argparse.SUPPRESS)  # -q / -v after the command too, not reset by it
    kernels = ", ".join(_robust_kernels())

    def command(name: str, text: str, description: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=description or text, epilog=_EPILOG,
                                  parents=[common], formatter_class=_Formatter)
        return sub

    pgo = command("pgo", "optimize a pose graph (g2o / TORO)",
                  "Optimize a pose graph (g2o / TORO): chi2 per iteration, then the optimized graph, the initial\n"
                  "and optimized trajectories (TUM), a plot and a JSON record of the run.")
    pgo.add_argument("file", nargs="?", default=str(DEFAULT_GRAPH), help="pose graph, g2o or TORO (default: %(default)s)")
    pgo.add_argument("--init", choices=["file", "odometry", "chordal"], default="file",
                     help="where the solve starts: file (the file's poses), odometry (chained odometry edges) or "
                          "chordal (chordal relaxation: rotations, then translations) (default: %(default)s)")
    pgo.add_argument("--max-iterations", type=_count, default=100, metavar="N",
                     help="the most iterations; a solve that stops there exits 0 with a warning (default: %(default)s)")
    pgo.add_argument("--optimizer", choices=["lm", "dogleg", "gn"], default="lm",
                     help="lm (Levenberg-Marquardt), dogleg (Powell's dogleg) or gn (Gauss-Newton) (default: %(default)s)")
    pgo.add_argument("--robust", metavar="KERNEL:SCALE", type=_robust,
                     help=f"robust kernel on each edge's whitened error norm, one of {kernels}, with its scale, "
                          "e.g. huber:1.0 or cauchy:0.5; tolerant:A,B and barron:SCALE,ALPHA take two numbers (default: none, plain least squares)")
    pgo.add_argument("--gnc", choices=["tls", "gm"],
                     help="graduated non-convexity (GTSAM's GncOptimizer schedule) with truncated least squares or "
                          "Geman-McClure, odometry edges as known inliers; the JSON gets each edge's weight and the "
                          "inlier set under \"gnc\" (default: none; not with --robust)")
    pgo.add_argument("--covariance", action="store_true",
                     help="also compute every pose's marginal covariance at the optimum (selected inversion) and write "
                          "it to <name>_covariance.npz (arrays ids (N,), covariance (N, d, d) in the tangent order of "
                          "x * Exp(d): translation first, body frame; zeros for fixed poses; fixed (N,), tangent); the 2D "
                          "plot draws 3-sigma position ellipses (default: off)")
    pgo.add_argument("--information", choices=["strict", "nearest-pd", "isotropic"], default="strict",
                     help="information matrices that are not positive definite: strict (an error naming the file, "
                          "line and eigenvalues), nearest-pd (clip those matrices' eigenvalues to 1e-6 x their "
                          "largest) or isotropic (SE-Sync's tau/kappa weights on every edge); repairs are counted in "
                          "the log and the JSON, and --out carries the repaired matrices (default: %(default)s)")
    _numerics(pgo)
    _output_options(pgo, {"out": "the optimized graph, g2o (default: <output-dir>/<name>_optimized.g2o)",
                          "tum": "the optimized trajectory as TUM text, vertex ids as timestamps "
                                 "(default: <output-dir>/<name>_optimized.tum)",
                          "initial-tum": "the trajectory the solve started from (after --init) as TUM text "
                                         "(default: <output-dir>/<name>_initial.tum)",
                          "png": "plot of the initial vs optimized trajectory (default: <output-dir>/<name>.png)",
                          "covariance-file": "with --covariance: where the covariances go, .npz "
                                             "(default: <output-dir>/<name>_covariance.npz)",
                          "json": "the run's record: chi2, iterations, times, sizes, configuration, versions, input "
                                  "sha256 (default: <output-dir>/<name>.json)"})

    ba = command("ba", "bundle adjustment of a BAL problem (plain or .bz2)",
                 "Bundle-adjust a BAL problem (plain or .bz2): chi2 per iteration, then the adjusted problem, a plot,\n"
                 "a PLY of points and cameras and a JSON record of the run.")
    ba.add_argument("file", help="BAL problem, plain text or .bz2")
    ba.add_argument("--max-iterations", type=_count, default=50, metavar="N",
                    help="the most iterations; a solve that stops there exits 0 with a warning (default: %(default)s)")
    ba.add_argument("--robust", metavar="KERNEL:SCALE", type=_robust,
                    help=f"robust kernel on each pixel error norm, one of {kernels}, with its scale, e.g. huber:1.0; "
                         "tolerant:A,B and barron:SCALE,ALPHA take two numbers (default: none, plain least squares)")
    ba.add_argument("--fix-intrinsics", action="store_true", help="keep f, k1, k2 as read (default: adjust them)")
    ba.add_argument("--fix-cameras", type=_camera_list, metavar="I,J,...",
                    help="hold these cameras' poses as read (0-based), e.g. 0,1: two fix the similarity gauge "
                         "(default: none; the damping handles the gauge)")
    ba.add_argument("--covariance", action="store_true",
                    help="also compute every camera's and point's marginal covariance at the optimum (selected "
                         "inversion on the Schur ordering) and write them to <name>_covariance.npz (arrays "
                         "camera_pose (C, 6, 6) in the tangent order of x * Exp(d), translation first; intrinsics "
                         "(C, 3, 3) of f, k1, k2; point (P, 3, 3); zeros for fixed elements); needs --fix-cameras "
                         "with two cameras (default: off)")
    ba.add_argument("--linear-solver", choices=["schur", "iterative-schur", "cholmod", "dense"], default="schur",
                    help="schur: points eliminated, reduced system by Cholesky; iterative-schur: the same by "
                         "block-Jacobi PCG; cholmod / dense: the full system (default: %(default)s)")
    ba.add_argument("--dense-memory-budget", type=_size, metavar="SIZE",
                    help="the most memory --linear-solver dense may hold, e.g. 8GiB or 500MB; a larger solve is "
                         "refused before it starts, with its estimate (default: $SLAM_DENSE_MEMORY_BUDGET if set, "
                         "else 4GiB)")
    _numerics(ba)
    _output_options(ba, {"out": "the adjusted problem, BAL text (default: <output-dir>/<name>_adjusted.txt)",
                         "png": "plot of the adjusted points and cameras (default: <output-dir>/<name>.png)",
                         "ply": "the adjusted points and camera centres as a PLY point cloud "
                                "(default: <output-dir>/<name>.ply)",
                         "plot": "before/after figure: points and camera frusta, reprojection-error histograms; "
                                 ".png, or .pdf/.svg for vector (default: <output-dir>/<name>_before_after.png)",
                         "covariance-file": "with --covariance: where the covariances go, .npz "
                                            "(default: <output-dir>/<name>_covariance.npz)",
                         "json": "the run's record: chi2, iterations, time, sizes, configuration, versions, input "
                                 "sha256 (default: <output-dir>/<name>.json)"})

    evaluate = command("eval", "ATE / RPE of a trajectory against ground truth (TUM or KITTI)", _EVAL_DESCRIPTION)
    evaluate.add_argument("estimate", help="the estimated trajectory, TUM or KITTI")
    evaluate.add_argument("reference", help="the ground truth, TUM or KITTI")
    evaluate.add_argument("--align", choices=["se3", "sim3", "se2", "none"], default="se3",
                          help="Umeyama alignment of the estimate onto the reference before APE and RPE: se3 (evo -a), "
                               "sim3 (with scale; evo -as), se2 (a rotation about z and a translation in the x-y "
                               "plane, for planar trajectories) or none (evo's default) (default: %(default)s)")
    evaluate.add_argument("--pose-relation", choices=_POSE_RELATIONS, default="trans", metavar="RELATION",
                          help="what APE and RPE measure of each error pose E: trans (evo trans_part: metres, "
                               "reported as ATE/RPE translation with RPE rotation), rot (evo angle_deg, or "
                               "angle_rad with --angle-unit rad: the rotation angle), full (evo full: |E - I4|_F), "
                               "rot_part (evo rot_part: |R(E) - I3|_F); evo's names are accepted too "
                               "(default: %(default)s)")
    evaluate.add_argument("--angle-unit", choices=["deg", "rad"],
                          help="unit of --pose-relation rot: deg (evo angle_deg) or rad (evo angle_rad) (default: deg)")
    evaluate.add_argument("--delta", type=_positive_number, default=1.0, metavar="N",
                          help="RPE pair distance in --delta-unit (evo --delta) (default: %(default)g)")
    evaluate.add_argument("--delta-unit", choices=["f", "m", "d", "r"], default="f",
                          help="evo's letters: f frames, m metres travelled, d degrees or r radians turned "
                               "(default: %(default)s)")
    evaluate.add_argument("--all-pairs", action="store_true",
                          help="RPE over all pairs at distance delta (within 10%% for m, d, r), not consecutive ones "
                               "(evo --all_pairs) (default: consecutive)")
    evaluate.add_argument("--max-diff", type=_non_negative_number, default=0.01, metavar="SECONDS",
                          help="largest timestamp difference of associated TUM poses (evo --t_max_diff) "
                               "(default: %(default)g)")
    evaluate.add_argument("--plot", type=Path, metavar="OUT.png|.pdf|.svg",
                          help="the trajectories after alignment and the APE over time, as evo_ape --plot shows "
                               "(default: no plot)")
    evaluate.add_argument("--json", type=Path, help="the figures and per-pose errors as JSON (default: none)")

    view = command("view", "show a pose graph in Open3D (or draw it to a PNG, PDF or SVG)",
                   "Show a pose graph in an Open3D window (odometry edges orange, loop closures grey), or draw it\n"
                   "headless to a file; an interactive window needs a display (DISPLAY or WAYLAND_DISPLAY on Linux).")
    view.add_argument("file", help="pose graph, g2o or TORO")
    view.add_argument("--png", type=Path, metavar="OUT.png|.pdf|.svg",
                      help="draw the graph to this file instead of opening a window, with matplotlib (legend, "
                           "metres, title): .png, or .pdf/.svg for vector (default: a window)")
    view.add_argument("--ply", type=Path, metavar="PREFIX",
                      help="also save PREFIX_edges.ply and PREFIX_frames.ply (default: none)")

    for each in (parser, *commands.choices.values()):
        each.error = _one_line_error(each)  # type: ignore[method-assign]
    return parser


def _verbosity(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="only warnings, errors and the final summary (also after the command)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="also debug lines, and the traceback of an internal error (also after the command)")


def _numerics(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                        help="floating-point type of the solve (default: %(default)s)")
    parser.add_argument("--device", default="cpu",
                        help="where the solve runs: cpu, cuda, cuda:N or mps, checked before any work (default: %(default)s)")


def _output_options(parser: argparse.ArgumentParser, outputs: dict[str, str]) -> None:
    parser.add_argument("--output-dir", type=Path, metavar="DIR",
                        help="where the outputs go, created if missing (default: slam-output/<name>/)")
    for name, text in outputs.items():
        parser.add_argument(f"--{name}", type=Path, metavar="FILE", help=text)
    parser.add_argument("--progress", action="store_true",
                        help="show a progress bar (tqdm), the log lines printed above it (default: no bar)")


def _robust_kernels() -> list[str]:
    """The ``--robust`` kernel names ``slam.robust.parse_robust`` takes."""
    from .robust import _LOSSES

    return sorted(_LOSSES)


def main(argv: list[str] | None = None) -> int:
    """Run the ``slam`` command; returns its exit code (the table in the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet and args.verbose:
        parser.error("-q and -v: give one of them")
    args.argv = argv
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    if args.verbose:
        log.setLevel(logging.DEBUG)
    user_errors = _user_errors()
    try:
        code = {"pgo": _pgo, "ba": _ba, "eval": _eval, "view": _view}[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:  # the reader went away (slam eval ... | head): stop quietly, like cat
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"slam {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except user_errors as error:  # bad input or environment: one clear line, no traceback
        print(f"slam {args.command}: error: {_about_input(args, error)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # a bug of ours: still one line, the traceback on request
        if os.environ.get("SLAM_TRACEBACK") or args.verbose:
            raise
        print(f"slam {args.command}: internal error: {type(error).__name__}: {_one_line(error)} "
              "(-v or SLAM_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (a test's capture)
        pass


def _count(text: str) -> int:
    """An option value that must be a non-negative integer (argparse reports it as a usage error)."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def _camera_list(text: str) -> list[int]:
    """``--fix-cameras``: distinct non-negative camera indices separated by commas, e.g. ``0,1``."""
    parts = [part.strip() for part in text.split(",")]
    if not parts or not all(part.isascii() and part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"expected camera indices like 0,1, got {text!r}")
    cameras = [int(part) for part in parts]
    if len(set(cameras)) != len(cameras):
        raise argparse.ArgumentTypeError(f"a camera is listed twice in {text!r}")
    return cameras


def _size(text: str) -> int:
    """``--dense-memory-budget``: bytes from ``8GiB``, ``500MB`` or a count (``slam.linear.dense.parse_size``)."""
    from .linear.dense import parse_size

    try:
        size = parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if size <= 0:
        raise argparse.ArgumentTypeError(f"expected more than 0 bytes, got {text!r}")
    return size


def _robust(text: str):  # type: ignore[no-untyped-def]
    """``--robust KERNEL:SCALE`` as a loss, checked while the options are parsed."""
    from .robust import parse_robust

    try:
        return parse_robust(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user's input or machine can cause, each reported as one line with exit code 2:
    malformed files and options (ValueError, which FormatError, OutputPathError, UsageError,
    MemoryBudgetError and DisconnectedGraphError are), non-finite costs, singular systems,
    unreadable or unwritable files (OSError), ids out of range (OverflowError), truncated streams
    (EOFError), no display to render on (RenderError) and a missing optional package
    (ModuleNotFoundError)."""
    from .optim.gauss_newton import SingularSystemError
    from .problem import NonFiniteError
    from .viz import RenderError

    return (ValueError, OSError, OverflowError, EOFError, NonFiniteError, SingularSystemError, RenderError,
            ModuleNotFoundError)


def _about_input(args: argparse.Namespace, error: BaseException) -> str:
    """The error's one line, led by the input it is about when it names no file itself (a solver's
    non-finite cost, an alignment that fails, a disconnected graph); options, outputs and the
    machine are not the input's fault and get no such lead."""
    message = _one_line(error)
    inputs = [getattr(args, name) for name in ("file", "estimate", "reference") if getattr(args, name, None)]
    if (not inputs or isinstance(error, (UsageError, OutputPathError)) or message.startswith("--")
            or any(str(p) in message or Path(p).name in message for p in inputs)):
        return message
    return f"{' vs '.join(map(str, inputs))}: {message}"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _check_device(device: str) -> torch.device:
    """The ``--device`` as a torch.device, refused before any work when this machine lacks it."""
    if device.strip().lower() == "gpu":
        raise UsageError("--device gpu: not a torch device; use --device cuda (or cuda:N) on NVIDIA, mps on Apple")
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {device!r}: not a device (cpu, cuda, cuda:N, mps)") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"--device {device}: this machine has no CUDA device (torch {torch.__version__} "
                             f"{'built without CUDA' if torch.version.cuda is None else 'sees none'}); use --device cpu")
        if parsed.index is not None and parsed.index >= count:
            raise UsageError(f"--device {device}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    elif parsed.type != "cpu":
        raise UsageError(f"--device {device}: unsupported device type {parsed.type!r} (cpu, cuda, cuda:N, mps)")
    return parsed


def _exit_code(converged: bool, termination: str) -> int:
    """0 for a converged solve or one stopped at ``--max-iterations``; 3 for any other ending."""
    from .optim import Termination

    return EXIT_OK if converged or termination == Termination.MAX_ITERATIONS else EXIT_NOT_CONVERGED


def _warn_unconverged(args: argparse.Namespace, converged: bool, termination: str, iterations: int) -> None:
    """The one warning line of a solve that did not converge (exit code 0 at the limit, else 3)."""
    if converged:
        return
    if _exit_code(converged, termination) == EXIT_OK:
        log.warning("slam %s: warning: stopped at --max-iterations %d before converging; the outputs hold the last "
                    "iterate", args.command, args.max_iterations)
    else:
        log.warning("slam %s: warning: did not converge (%s) after %d iterations; the outputs hold the last accepted "
                    "iterate (exit code 3)", args.command, termination, iterations)


def _sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run_record(args: argparse.Namespace, sha256: str, code: int) -> dict[str, object]:
    """What the JSON adds to the result's summary to repeat the run: the command line, the input and its
    sha256, the versions, and the exit code."""
    return {
        "command": ["slam", *args.argv],
        "input": {"path": str(args.file), "sha256": sha256, "bytes": os.path.getsize(args.file)},
        "versions": {"liegeo-slam": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "exit_code": code,
    }


def _chi2_line(summary: dict) -> str:
    """``chi2 A -> B`` from a summary, with ``(robust chi2 C -> D)`` where a robust kernel was set."""
    def number(x: object) -> str:
        return "nan" if x is None else f"{x:.6e}"

    text = f"chi2 {number(summary['initial_chi2'])} -> {number(summary['final_chi2'])}"
    if "initial_robust_chi2" in summary:
        text += f" (robust chi2 {number(summary['initial_robust_chi2'])} -> {number(summary['final_robust_chi2'])})"
    return text


def _pgo(args: argparse.Namespace) -> int:
    from .io import read_g2o, write_g2o, write_tum
    from .pgo import optimize
    device = _check_device(args.device)
    stem = Path(args.file).stem
    if args.covariance_file is not None:
        args.covariance = True
    suffixes = {"out": "_optimized.g2o", "tum": "_optimized.tum", "initial_tum": "_initial.tum", "png": ".png",
                "json": ".json"} | ({"covariance_file": "_covariance.npz"} if args.covariance else {})
    with _outputs(args, stem, suffixes, inputs=[args.file]) as staged:
        start = time.perf_counter()
        graph = read_g2o(args.file, information=args.information)
        sha256 = _sha256(args.file)
        log.info("%s (read in %.2f s)", graph.describe(), time.perf_counter() - start)
        if graph.information_repair is not None:
            (log.warning if graph.information_repair.changed else log.info)(
                "%s: %s", Path(args.file).name, graph.information_repair.describe())
        result = optimize(graph, init=args.init, max_iterations=args.max_iterations, loss=args.robust,
                          dtype=getattr(torch, args.dtype), device=device, progress=args.progress,
                          optimizer=args.optimizer, gnc=args.gnc, covariance=args.covariance)
        optimized = result.graph.to(dtype=torch.float64, device="cpu")
        initial = result.graph.with_poses(result.initial_poses).to(dtype=torch.float64, device="cpu")

        write_g2o(staged["out"], optimized)
        write_tum(staged["tum"], _trajectory(optimized))
        write_tum(staged["initial_tum"], _trajectory(initial))
        from .viz import plot_trajectories

        series = {"initial (file)": graph.poses}
        if args.init != "file":  # the computed start as a series of its own colour (slam.viz.style)
            series[f"{args.init} start"] = initial.poses
        series["optimized"] = optimized.poses
        start_name = "" if args.init == "file" else f" ({args.init} start)"
        plot_trajectories(staged["png"], series, edges=(optimized.i, optimized.j), covariances=result.covariance,
                          title=f"{Path(args.file).name}: chi2 {result.initial_chi2:.4g}{start_name} -> "
                                f"{result.final_chi2:.4g}")
        if result.covariance is not None:
            fixed = torch.zeros(optimized.num_poses, dtype=torch.bool).index_fill(0, optimized.fixed, True)
            names = "vx vy vz wx wy wz" if result.covariance.shape[-1] == 6 else "vx vy w"
            _write_covariances(staged["covariance_file"], f"{names} (x * Exp(d): translation first, body frame)",
                               {"covariance": result.covariance}, ids=optimized.ids.numpy(), fixed=fixed.numpy())
            log.info("covariances of %d poses in %.3f s (selected inversion)", optimized.num_poses,
                     result.covariance_seconds)
        code = _exit_code(result.converged, result.termination)
        summary = result.summary()
        _write_json(staged["json"], summary | _run_record(args, sha256, code) | {"outputs": _names(staged)})
    _report(staged, f"{stem}: {_chi2_line(summary)} in {result.iterations} iterations ({result.termination}), "
                    f"solve {result.solve_seconds:.3f} s, init {result.init_seconds:.3f} s")
    _warn_unconverged(args, result.converged, result.termination, result.iterations)
    return code


def _write_covariances(path: Path, tangent: str, covariances: dict[str, torch.Tensor], **arrays: Any) -> None:
    """Covariances as ``.npz``: each of ``covariances`` in float64, ``tangent`` (what the components are,
    in order) and any other ``arrays`` (``slam pgo``'s ``ids``, ``fixed``)."""
    import numpy as np

    tensors = {name: c.detach().to("cpu", torch.float64).numpy() for name, c in covariances.items()}
    with open(path, "wb") as stream:  # a file object: numpy adds no second .npz suffix
        np.savez(stream, **tensors, **arrays, tangent=np.array(tangent))


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
            raise OutputPathError(f"--output-dir {outdir}: exists and is not a directory")
        for folder in reversed([outdir, *outdir.parents]):
            if not folder.exists():
                try:
                    folder.mkdir()
                except OSError as error:
                    for made_folder in reversed(made):
                        made_folder.rmdir()
                    raise OutputPathError(f"--output-dir {outdir}: cannot create {folder} "
                                          f"({error.strerror or type(error).__name__})") from None
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
    width = max(len(key) for key in staged.outputs) if staged.outputs else 0
    for key, path in staged.outputs.items():
        print(f"  {key:>{width}}: {path}")


def _ba(args: argparse.Namespace) -> int:
    from .ba import optimize
    from .io import read_bal, write_bal
    device = _check_device(args.device)
    linear_solver = args.linear_solver
    if linear_solver == "dense" and args.dense_memory_budget is not None:
        from .linear import DenseCholesky

        linear_solver = DenseCholesky(memory_budget=args.dense_memory_budget)
    stem = Path(args.file).name.split(".")[0]
    if args.covariance_file is not None:
        args.covariance = True
    fix_cameras = args.fix_cameras or []
    if args.covariance and len(fix_cameras) < 2:
        raise UsageError("--covariance needs the similarity gauge fixed: add --fix-cameras with two cameras, e.g. "
                         "--fix-cameras 0,1")
    suffixes = {"out": "_adjusted.txt", "png": ".png", "ply": ".ply", "plot": "_before_after.png",
                "json": ".json"} | ({"covariance_file": "_covariance.npz"} if args.covariance else {})
    with _outputs(args, stem, suffixes, inputs=[args.file]) as staged:
        start = time.perf_counter()
        problem = read_bal(args.file)
        sha256 = _sha256(args.file)
        log.info("%s (read in %.2f s)", problem.describe(), time.perf_counter() - start)
        if fix_cameras and max(fix_cameras) >= problem.num_cameras:
            raise UsageError(f"--fix-cameras {max(fix_cameras)}: the problem has {problem.num_cameras} cameras (0-based)")
        result = optimize(problem, max_iterations=args.max_iterations, loss=args.robust, fix_intrinsics=args.fix_intrinsics,
                          fix_cameras=fix_cameras, linear_solver=linear_solver, dtype=getattr(torch, args.dtype),
                          device=device, progress=args.progress, covariance=args.covariance)
        adjusted = result.problem
        write_bal(staged["out"], adjusted)
        from .viz import plot_scene, save_scene_ply

        summary = result.summary()
        plot_scene(staged["png"], adjusted.points, adjusted.poses(),
                   title=f"{stem}: chi2 {summary['initial_chi2']:.4g} -> {summary['final_chi2']:.4g}")
        save_scene_ply(staged["ply"], adjusted.points, adjusted.poses())
        from .viz import plot_bundle_adjustment

        plot_bundle_adjustment(staged["plot"], problem, adjusted,
                               title=f"{Path(args.file).name}: chi2 {summary['initial_chi2']:.4g} -> "
                                     f"{summary['final_chi2']:.4g} ({result.iterations} iterations)")
        if result.covariance is not None:
            _write_covariances(staged["covariance_file"], "camera_pose: vx vy vz wx wy wz (x * Exp(d): translation "
                               "first, body frame); intrinsics: f k1 k2; point: x y z", result.covariance)
            log.info("covariances of %d cameras and %d points in %.3f s (selected inversion, Schur ordering)",
                     problem.num_cameras, problem.num_points, result.covariance_seconds)
        code = _exit_code(result.converged, result.termination)
        _write_json(staged["json"], summary | _run_record(args, sha256, code) | {"outputs": _names(staged)})
    _report(staged, f"{stem}: {_chi2_line(summary)} in {result.iterations} iterations ({result.termination}), "
                    f"solve {result.solve_seconds:.3f} s")
    _warn_unconverged(args, result.converged, result.termination, result.iterations)
    return code


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
    from .viz import graph_geometry, plot_graph, ply_paths, save_ply_files, show

    outputs: dict[str, Path] = {"png": args.png} if args.png else {}
    if args.ply:
        outputs["ply edges"], outputs["ply frames"] = ply_paths(args.ply)
    with StagedOutputs(outputs, inputs=[args.file]) as staged:
        if not args.png and sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                                       or os.environ.get("WAYLAND_DISPLAY")):
            raise UsageError("no display for an interactive window (DISPLAY and WAYLAND_DISPLAY are unset): "
                             "render headless with --png OUT.png")  # before reading: an early, plain refusal
        graph = read_g2o(args.file)
        geometries = graph_geometry(graph.poses, graph.i, graph.j) if args.ply or not args.png else ()
        if args.ply:
            save_ply_files(staged["ply edges"], staged["ply frames"], *geometries)
        if args.png:
            plot_graph(staged["png"], graph.poses, graph.i, graph.j, name=Path(args.file).name)
        else:
            show(list(geometries))
    for path in staged.outputs.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
