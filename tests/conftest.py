from pathlib import Path

import pytest
import torch

from liegeo import SE2, SE3, SO2, SO3, Euclidean

GROUPS = [SO2, SE2, SO3, SE3]
"""The four groups; Euclidean is tested beside them where its dimension can be given."""

BATCH_SHAPES = [(), (7,), (2, 3)]


@pytest.fixture
def generator(request) -> torch.Generator:
    """A generator seeded from the test's id, so every test draws its own reproducible sample."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid)) % (2**31)
    return torch.Generator().manual_seed(seed)


def euclidean_random(*batch, generator, dtype=torch.float64):
    return Euclidean.random(*batch, dim=4, generator=generator, dtype=dtype)


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The larger public data sets beside the checkout (``../shared/data``); tests that need them skip
where they are not installed (e.g. a clone elsewhere)."""


def shared_file(*parts: str) -> Path:
    """``SHARED_DATA / parts``, or skip the test when that file is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is missing (the shared data sets are not installed beside the checkout)")
    return path


BUNDLED_DATA = Path(__file__).resolve().parents[1] / "data"
"""The repository's test-only datasets (not installed)."""

PACKAGE_DATA = Path(__file__).resolve().parents[1] / "slam" / "data"
"""The files the product uses at run time, installed with the package (``slam.data``)."""


def data_file(name: str, *shared_folder: str) -> Path:
    """A file bundled in ``slam/data/`` or ``data/``, else from ``SHARED_DATA / shared_folder``, else skip the test."""
    for folder in (PACKAGE_DATA, BUNDLED_DATA):
        if (folder / name).exists():
            return folder / name
    return shared_file(*shared_folder, name)
