"""Safe outputs: never write over an input, never leave a half-written file.

Three tools, used by every writer in ``slam.io`` and by the ``slam`` command:

- ``same_file(a, b)``: whether two paths name one file (device and inode where both exist, so
  hard links and symlinks count; resolved paths otherwise).
- ``check_outputs(outputs, inputs)``: every problem with a set of output paths before any work
  starts (an output that is an input, two outputs on one file, a directory, a device, a missing or
  unwritable folder), as one ``OutputPathError`` naming the option and the path.
- ``atomic_write_text`` and ``StagedOutputs``: each output is written to a temporary file in its
  own folder and renamed into place (atomic on POSIX), so a reader sees the old file or the new
  one, never a part; a failed run removes its temporaries and leaves no output of its own.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Iterable, Mapping

PathLike = str | os.PathLike[str]

__all__ = ["OutputPathError", "same_file", "check_outputs", "atomic_write_text", "StagedOutputs"]


class OutputPathError(ValueError):
    """An output path that cannot or must not be written; the message names it."""


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` are one file: same device and inode if both exist (hard links,
    symlinks), else the same fully resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(outputs: Mapping[str, PathLike], inputs: Iterable[PathLike] = ()) -> None:
    """Raise ``OutputPathError`` for the first output in ``outputs`` (name -> path) that is one of
    ``inputs``, shares a file with another output, is a directory or not a regular file, lies in a
    folder that does not exist, or cannot be written."""
    inputs = [Path(p) for p in inputs]
    seen: dict[str, tuple[str, Path]] = {}
    for name, value in outputs.items():
        path = Path(value)
        label = f"output {name} {path}"
        for source in inputs:
            if same_file(path, source):
                raise OutputPathError(f"{label}: is the input {source}; refusing to write over it")
        real = os.path.realpath(path)
        if real in seen:
            other, other_path = seen[real]
            raise OutputPathError(f"{label}: is also output {other} ({other_path}); give each output its own file")
        for other_name, other_path in seen.values():
            if same_file(path, other_path):
                raise OutputPathError(f"{label}: is the same file as output {other_name} ({other_path})")
        seen[real] = (name, path)
        if path.is_dir():
            raise OutputPathError(f"{label}: is a directory; give a file name")
        if path.exists() and not path.is_file():
            raise OutputPathError(f"{label}: exists and is not a regular file (a device or a pipe)")
        parent = Path(real).parent
        if not parent.is_dir():
            raise OutputPathError(f"{label}: folder {path.parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise OutputPathError(f"{label}: not writable")


def _target(path: Path) -> Path:
    """Where ``path``'s content goes: through a symlinked output to its target."""
    return Path(os.path.realpath(path))


def _reserve_temporary(path: Path) -> Path:
    """A new empty file beside ``path``'s target (same folder, same suffix, hidden name), created with
    the permissions a plain ``open(path, "w")`` would give (0o666 less the umask)."""
    real = _target(path)
    for _ in range(100):
        temporary = real.with_name(f".{real.stem}-{secrets.token_hex(4)}.partial{real.suffix}")
        try:
            os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return temporary
    raise FileExistsError(f"{path}: could not create a temporary file beside it")  # pragma: no cover


def atomic_write_text(path: PathLike, text: str, *, inputs: Iterable[PathLike] = ()) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file renamed into place (``StagedOutputs``
    with one output).

    Raises ``OutputPathError`` (before writing anything) when ``path`` is one of ``inputs``, a
    directory, not a regular file or in a missing folder; the temporary is removed on any failure.
    """
    with StagedOutputs({"file": path}, inputs) as staged:
        staged["file"].write_text(text, encoding="utf-8")
    return Path(path)


class StagedOutputs:
    """A run's outputs, written to temporaries and renamed into place together at the end.

    >>> with StagedOutputs({"json": Path("out.json")}, inputs=[graph_file]) as staged:
    ...     write_summary(staged["json"])      # writes the temporary
    ... # leaving the block without an error renames every temporary onto its output;
    ... # an error removes them all, and no output of this run appears.

    The paths are checked (``check_outputs``) when the object is made, before any work.
    """

    def __init__(self, outputs: Mapping[str, PathLike], inputs: Iterable[PathLike] = ()):
        self.outputs = {name: Path(p) for name, p in outputs.items()}
        check_outputs(self.outputs, inputs)
        self._temporaries: dict[str, Path] = {}

    def __getitem__(self, name: str) -> Path:
        """The temporary to write output ``name`` to (made on first use)."""
        if name not in self._temporaries:
            self._temporaries[name] = _reserve_temporary(self.outputs[name])
        return self._temporaries[name]

    def commit(self) -> None:
        """Rename every written temporary onto its output."""
        for name, temporary in list(self._temporaries.items()):
            os.replace(temporary, _target(self.outputs[name]))
            del self._temporaries[name]

    def discard(self) -> None:
        """Remove every temporary not yet committed."""
        for temporary in self._temporaries.values():
            temporary.unlink(missing_ok=True)
        self._temporaries.clear()

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, kind, error, traceback) -> None:  # type: ignore[no-untyped-def]
        if kind is None:
            try:
                self.commit()
            finally:
                self.discard()
        else:
            self.discard()
