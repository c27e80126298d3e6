"""The data files the product itself uses at run time, shipped inside the package (and so in the wheel).

- ``intel.g2o``: the default pose graph of ``slam pgo``;
- ``tinyGrid3D.g2o``: a 9-pose 3D pose graph;
- ``dubrovnik-3-7-pre.txt``: a 3-camera, 7-point BAL problem, a sample for ``slam ba``;
- ``panda_no_gripper.urdf``, ``kuka_iiwa.urdf``, ``ur5.urdf``: robots for ``slam.kinematics``.

``path("panda_no_gripper.urdf")`` is a file's path from any working directory; origins and terms of
every file are in ``README.md`` beside this module.  Test-only datasets stay in the repository's
``data/`` folder (not installed).
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

__all__ = ["path", "names"]

_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def path(name: str) -> Path:
    """The bundled file ``name`` (e.g. ``"intel.g2o"``) as a filesystem path; ``FileNotFoundError``
    naming the bundled files where there is no such file."""
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"expected a bundled file's name, got {name!r}")
    resource = resources.files(__name__).joinpath(name)
    if not resource.is_file() or name not in names():
        raise FileNotFoundError(f"{name!r} is not a bundled data file of slam (bundled: {', '.join(names())})")
    if isinstance(resource, Path):
        return resource
    # An install that is not a plain folder (a zip): a temporary copy, kept until the process exits.
    return _extracted.enter_context(resources.as_file(resource))


def names() -> list[str]:
    """The bundled data files' names, sorted (this module and the README excluded)."""
    return sorted(entry.name for entry in resources.files(__name__).iterdir()
                  if entry.is_file() and not entry.name.endswith((".py", ".pyc")) and entry.name != "README.md")
