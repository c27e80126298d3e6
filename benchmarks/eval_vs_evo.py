"""``slam eval``'s figures beside evo's (evo_ape -a / evo_rpe -a) on the shared KITTI and TUM trajectories.

    pip install evo   # not a dependency of liegeo-slam; only this script and an optional test use it
    python benchmarks/eval_vs_evo.py [--data ../shared/data/trajectories]

For each file pair and option set (``--delta 10 --delta-unit m``, ``--pose-relation rot``, ...) the
six statistics of ours (``slam.metrics.evaluate``, what ``slam eval`` prints) and of evo 1.38's
``metrics.APE`` / ``metrics.RPE`` after its SE(3) Umeyama alignment, with ours / evo and ours - evo,
then the wall time of each.  KITTI translations differ by ~1e-6 relative: we project the files'
rotation blocks onto SO(3), evo inverts them unprojected as Rᵀ (see tests/test_eval_evo_options.py).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

from slam.metrics import evaluate

from _table import print_table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "trajectories"
STATISTICS = ("rmse", "mean", "median", "std", "min", "max")
FILES = {"KITTI 00": ("KITTI_00_ORB.txt", "KITTI_00_gt.txt"),
         "TUM fr1/xyz": ("freiburg1_xyz-rgbdslam.txt", "freiburg1_xyz-groundtruth.txt")}
# (label, metric, slam eval options as evaluate() arguments, evo pose relation, evo delta, evo delta unit)
CASES = [
    ("APE (default)", "ape", {}, "translation_part", None, None),
    ("RPE --delta 10 --delta-unit m", "rpe", {"delta": 10.0, "unit": "meters"}, "translation_part", 10.0, "meters"),
    ("RPE --delta 1 --delta-unit m", "rpe", {"delta": 1.0, "unit": "meters"}, "translation_part", 1.0, "meters"),
    ("APE --pose-relation rot", "ape", {"pose_relation": "rot"}, "rotation_angle_deg", None, None),
    ("RPE --pose-relation rot", "rpe", {"pose_relation": "rot"}, "rotation_angle_deg", 1, "frames"),
    ("RPE --delta 10 --delta-unit d", "rpe", {"delta": 10.0, "unit": "degrees"}, "translation_part", 10.0, "degrees"),
    ("APE --pose-relation full", "ape", {"pose_relation": "full"}, "full_transformation", None, None),
]


def _load_evo(name: str, est_file: Path, ref_file: Path):  # type: ignore[no-untyped-def]
    from evo.tools import file_interface

    if name.startswith("KITTI"):
        return file_interface.read_kitti_poses_file(str(est_file)), file_interface.read_kitti_poses_file(str(ref_file))
    ref, est = (file_interface.read_tum_trajectory_file(str(p)) for p in (ref_file, est_file))
    ref, est = ref.sync_with(est, max_diff=0.01)
    return est, ref


def _evo_statistics(est, ref, metric: str, relation: str, delta, unit) -> dict[str, float] | str:  # type: ignore[no-untyped-def]
    from evo.core import metrics
    from evo.core.units import Unit

    est = copy.deepcopy(est)
    est.align(ref)  # evo_ape -a / evo_rpe -a: slam eval's default se3 alignment
    pose_relation = metrics.PoseRelation[relation]
    measure = metrics.APE(pose_relation) if metric == "ape" else metrics.RPE(pose_relation, delta, Unit[unit])
    try:
        measure.process_data((ref, est))
    except Exception as error:  # evo's FilterException: no pairs at this delta
        return f"evo: {type(error).__name__}"
    return {name: float(value) for name, value in measure.get_all_statistics().items()}


def _our_statistics(est_file: Path, ref_file: Path, metric: str, options: dict) -> dict[str, float] | str:
    try:
        result = evaluate(est_file, ref_file, **options)
    except ValueError as error:
        return f"ours: {'no pairs' if 'no pose pairs' in str(error) else error}"
    if metric == "ape":
        return result["ape"]
    return result["rpe"]["relation"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help=f"folder of the trajectories (default: {DATA})")
    args = parser.parse_args()
    try:
        import evo
    except ImportError:
        print("evo is not installed (pip install evo); nothing to compare", file=sys.stderr)
        return 1
    rows, timing = [], []
    for name, (est_name, ref_name) in FILES.items():
        est_file, ref_file = args.data / est_name, args.data / ref_name
        if not est_file.exists() or not ref_file.exists():
            print(f"{name}: {est_file} or {ref_file} is missing; skipped", file=sys.stderr)
            continue
        est, ref = _load_evo(name, est_file, ref_file)
        for label, metric, options, relation, delta, unit in CASES:
            start = time.perf_counter()
            ours = _our_statistics(est_file, ref_file, metric, options)
            ours_s = time.perf_counter() - start
            start = time.perf_counter()
            theirs = _evo_statistics(est, ref, metric, relation, delta, unit)
            evo_s = time.perf_counter() - start
            timing.append((name, label, f"{ours_s:.3f}", f"{evo_s:.3f}"))
            if isinstance(ours, str) or isinstance(theirs, str):
                rows.append((name, label, "-", str(ours if isinstance(ours, str) else "ok"),
                             str(theirs if isinstance(theirs, str) else "ok"), "-", "-"))
                continue
            for stat in STATISTICS:
                a, b = ours[stat], theirs[stat]
                rows.append((name, label, stat, f"{a:.12g}", f"{b:.12g}", f"{a / b:.12f}" if b else "-", f"{a - b:+.2e}"))
    print_table(("data", "case", "statistic", "slam eval", f"evo {evo.__version__}", "ours / evo", "ours - evo"), rows,
                title="slam eval against evo (both with SE(3) Umeyama alignment; evo's APE / RPE classes)")
    print_table(("data", "case", "ours (s)", "evo (s)"), timing,
                title="wall time per case (ours: reading both files, association, alignment, APE and RPE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
