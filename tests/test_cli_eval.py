"""``slam eval``: the command reproduces evo's published APE figures (see ../shared/data/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import slam.cli

TRAJECTORIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "trajectories"


def test_eval_command_matches_evo(tmp_path, capsys):
    estimate, reference = TRAJECTORIES / "KITTI_00_ORB.txt", TRAJECTORIES / "KITTI_00_gt.txt"
    if not estimate.exists():
        pytest.skip(f"{estimate} is not available")
    out = tmp_path / "eval.json"
    assert slam.cli.main(["-q", "eval", str(estimate), str(reference), "--json", str(out)]) == 0
    ate = json.loads(out.read_text())["ate"]
    assert ate["rmse"] == pytest.approx(1.3034497, abs=1e-7)
    assert ate["mean"] == pytest.approx(1.1569971, abs=1e-7)
    assert ate["max"] == pytest.approx(3.5879491, abs=1e-7)
    assert "ATE translation" in capsys.readouterr().out
