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
import sys
import time
from pathlib import Path

import torch

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
    pgo.add_argument("--max-iterations", type=int, default=100)
    pgo.add_argument("--robust", metavar="KERNEL:SCALE", help="e.g. huber:1.0, cauchy:0.5 (on each edge's chi)")
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
    ba.add_argument("--max-iterations", type=int, default=50)
    ba.add_argument("--robust", metavar="KERNEL:SCALE", help="e.g. huber:1.0, cauchy:1.0 (on each pixel error)")
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

    evaluate = commands.add_parser("eval", help="ATE / RPE of a trajectory against ground truth (TUM or KITTI)")
    evaluate.add_argument("estimate")
    evaluate.add_argument("reference")
    evaluate.add_argument("--align", choices=["se3", "sim3", "se2", "none"], default="se3")
    evaluate.add_argument("--json", type=Path)

    view = commands.add_parser("view", help="show a pose graph in Open3D (or render it to a PNG)")
    view.add_argument("file")
    view.add_argument("--png", type=Path, help="render headless to this PNG instead of opening a window")
    view.add_argument("--ply", type=Path, help="also save <prefix>_edges.ply and <prefix>_frames.ply")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        return {"pgo": _pgo, "ba": _ba, "eval": _eval, "view": _view}[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:  # bad input: one clear line, no traceback
        print(f"slam {args.command}: error: {error}", file=sys.stderr)
        return 2


def _pgo(args: argparse.Namespace) -> int:
    from .io import read_g2o, write_g2o, write_tum
    from .pgo import optimize
    from .robust import parse_robust

    start = time.perf_counter()
    graph = read_g2o(args.file)
    log.info("%s (read in %.2f s)", graph.describe(), time.perf_counter() - start)
    stem = Path(args.file).stem
    paths = _output_paths(args, stem, {"out": "_optimized.g2o", "tum": "_optimized.tum", "png": ".png",
                                       "json": ".json"})
    loss = parse_robust(args.robust) if args.robust else None
    result = optimize(graph, init=args.init, max_iterations=args.max_iterations, loss=loss,
                      dtype=getattr(torch, args.dtype), device=args.device, progress=args.progress)
    optimized = result.graph.to(dtype=torch.float64, device="cpu")

    write_g2o(paths["out"], optimized)
    write_tum(paths["tum"], _trajectory(optimized))
    from .viz import plot_trajectories

    initial = graph.poses if args.init == "file" else None
    trajectories = {"initial": initial, "optimized": optimized.poses} if initial is not None else {
        "optimized": optimized.poses}
    plot_trajectories(paths["png"], trajectories, edges=(optimized.i, optimized.j),
                      title=f"{stem}: chi2 {result.initial_chi2:.4g} -> {result.final_chi2:.4g}")
    _report(paths, result.summary(),
            f"{stem}: chi2 {result.initial_chi2:.6e} -> {result.final_chi2:.6e} in {result.iterations} iterations "
            f"({result.termination}), solve {result.solve_seconds:.3f} s, init {result.init_seconds:.3f} s")
    return 0 if result.converged else 1


def _output_paths(args: argparse.Namespace, stem: str, suffixes: dict[str, str]) -> dict[str, Path]:
    """Each output's path: its option if given, else ``<stem><suffix>`` in ``--output-dir``
    (default ``slam-output/<stem>/``, created)."""
    outdir = args.output_dir or Path("slam-output") / stem
    outdir.mkdir(parents=True, exist_ok=True)
    return {key: getattr(args, key) or outdir / f"{stem}{suffix}" for key, suffix in suffixes.items()}


def _report(paths: dict[str, Path], summary: dict, line: str) -> None:
    """Write the JSON summary (with the output paths) and print the result line and the paths."""
    summary = summary | {"outputs": {k: str(v) for k, v in paths.items()}}
    paths["json"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(line)
    for key, path in paths.items():
        print(f"  {key:>4}: {path}")


def _ba(args: argparse.Namespace) -> int:
    from .ba import optimize
    from .io import read_bal, write_bal
    from .robust import parse_robust

    start = time.perf_counter()
    problem = read_bal(args.file)
    log.info("%s (read in %.2f s)", problem.describe(), time.perf_counter() - start)
    stem = Path(args.file).name.split(".")[0]
    paths = _output_paths(args, stem, {"out": "_adjusted.txt", "png": ".png", "ply": ".ply", "json": ".json"})
    loss = parse_robust(args.robust) if args.robust else None
    result = optimize(problem, max_iterations=args.max_iterations, loss=loss, fix_intrinsics=args.fix_intrinsics,
                      linear_solver=args.linear_solver, dtype=getattr(torch, args.dtype), device=args.device,
                      progress=args.progress)
    adjusted = result.problem
    write_bal(paths["out"], adjusted)
    from .viz import plot_scene, save_scene_ply

    plot_scene(paths["png"], adjusted.points, adjusted.poses(),
               title=f"{stem}: cost {result.initial_cost:.4g} -> {result.final_cost:.4g}")
    save_scene_ply(paths["ply"], adjusted.points, adjusted.poses())
    _report(paths, result.summary(),
            f"{stem}: cost {result.initial_cost:.6e} -> {result.final_cost:.6e} in {result.iterations} iterations "
            f"({result.termination}), solve {result.solve_seconds:.3f} s")
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


def _eval(args: argparse.Namespace) -> int:
    from .metrics import evaluate, format_report

    result = evaluate(args.estimate, args.reference, align=args.align)
    print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps(_plain(result), indent=2) + "\n", encoding="utf-8")
    return 0


def _plain(value):  # type: ignore[no-untyped-def]
    """JSON-ready copy: tensors to lists/floats."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


def _view(args: argparse.Namespace) -> int:
    from .io import read_g2o
    from .viz import graph_geometry, render_png, save_ply, show

    graph = read_g2o(args.file)
    geometries = graph_geometry(graph.poses, graph.i, graph.j)
    if args.ply:
        for path in save_ply(args.ply, *geometries):
            print(f"wrote {path}")
    if args.png:
        print(f"wrote {render_png(args.png, list(geometries))}")
    else:
        show(list(geometries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
