"""Open3D geometry for pose graphs: export to PLY, headless raster render, interactive view.

Open3D is imported inside the functions (it is in the ``viz`` extra).  A pose graph
becomes two geometries: one ``LineSet`` for all edges (odometry ``|i - j| = 1`` in the
``initial`` colour of :mod:`slam.viz.style`, the poses as the file holds them; every other
edge, i.e. loop closures, in its ``loop_closure`` grey) and one ``TriangleMesh`` holding the
coordinate frames of the poses (x red, y green, z blue: Open3D's own frame), merged in numpy.
SE2 poses are lifted to z = 0.

``slam view --png`` draws its still with matplotlib (``slam.viz.plot.plot_graph``: legend,
units, title, vector formats); :func:`render_png` here is Open3D's raster view of the same
geometry (no legend, no text), for PNG/JPEG only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import Tensor

from liegeo import SE2, SE3

from . import style
from .plot import _edge_arrays, pose_arrays

__all__ = ["ODOMETRY_COLOR", "LOOP_CLOSURE_COLOR", "RASTER_SUFFIXES", "RenderError", "graph_geometry", "ply_paths",
           "save_ply", "save_ply_files", "render_png", "show"]

ODOMETRY_COLOR = style.rgb("initial")
"""RGB of odometry edges (``|i - j| = 1``): ``style.rgb("initial")`` as imported (``graph_geometry``
reads the palette when called)."""

LOOP_CLOSURE_COLOR = style.rgb("loop_closure")
"""RGB of all other edges (loop closures): ``style.rgb("loop_closure")`` as imported."""

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
"""What :func:`render_png` can write: Open3D renders pixels only."""


class RenderError(RuntimeError):
    """Open3D could not open a window (no display for :func:`show`, no EGL/GL for :func:`render_png`)."""


def _open3d() -> Any:
    try:
        import open3d
    except ImportError as exc:
        raise ImportError(
            "slam.viz.open3d_view needs Open3D, which is in the optional 'viz' extra: "
            "pip install 'liegeo-slam[viz]' (or pip install open3d-cpu / open3d)"
        ) from exc
    return open3d


def graph_geometry(
    poses: SE2 | SE3,
    i: Tensor,
    j: Tensor,
    *,
    frame_size: float | None = None,
    max_frames: int = 200,
) -> tuple[Any, Any]:
    """The pose graph as one ``LineSet`` (edges) and one ``TriangleMesh`` (pose frames).

    Args:
        poses: ``SE2`` or ``SE3`` poses ``(N,)``.
        i, j: edge endpoints ``(E,)``, indices into ``poses``.
        frame_size: axis length of the frames; default 2% of the diagonal of the
            positions' bounding box (1 if all positions coincide).
        max_frames: at most this many frames are drawn, at evenly spaced pose indices
            (always including the first and last pose), so large graphs stay light:
            every frame is a 1134-vertex mesh.  The LineSet always has every pose and edge.

    Returns:
        ``(lineset, mesh)``: ``lineset`` has the ``N`` positions as points and ``E`` lines
        in the order of ``i, j``, coloured per line; ``mesh`` has ``K * V`` vertices for
        ``K = min(N, max_frames)`` frames of ``V`` vertices each, with vertex colours and normals.
    """
    o3d = _open3d()
    positions, rotations = pose_arrays(poses)
    n = positions.shape[0]
    ii, jj = _edge_arrays((i, j), n)

    lineset = o3d.geometry.LineSet(
        o3d.utility.Vector3dVector(positions),
        o3d.utility.Vector2iVector(np.stack([ii, jj], axis=1).astype(np.int32).reshape(-1, 2)),
    )
    odometry = (np.abs(ii - jj) == 1)[:, None]
    colors = np.where(odometry, np.asarray(style.rgb("initial")), np.asarray(style.rgb("loop_closure")))
    lineset.colors = o3d.utility.Vector3dVector(colors.reshape(-1, 3))

    if frame_size is None:
        diagonal = float(np.linalg.norm(np.ptp(positions, axis=0))) if n else 0.0
        frame_size = 0.02 * diagonal if diagonal > 0 else 1.0
    keep = np.unique(np.linspace(0, n - 1, min(n, max(int(max_frames), 1))).round().astype(np.int64)) if n else []
    frame = o3d.geometry.TriangleMesh.create_coordinate_frame(size=frame_size)
    v = np.asarray(frame.vertices)  # (V, 3)
    r, t = rotations[keep], positions[keep]  # (K, 3, 3), (K, 3)
    k = r.shape[0]
    vertices = np.einsum("kab,vb->kva", r, v) + t[:, None, :]
    normals = np.einsum("kab,vb->kva", r, np.asarray(frame.vertex_normals))
    triangles = np.asarray(frame.triangles)[None] + (np.arange(k) * v.shape[0])[:, None, None]
    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(vertices.reshape(-1, 3)),
        o3d.utility.Vector3iVector(triangles.reshape(-1, 3).astype(np.int32)),
    )
    mesh.vertex_normals = o3d.utility.Vector3dVector(normals.reshape(-1, 3))
    mesh.vertex_colors = o3d.utility.Vector3dVector(np.tile(np.asarray(frame.vertex_colors), (k, 1)))
    return lineset, mesh


def ply_paths(path_prefix: str | os.PathLike) -> tuple[Path, Path]:
    """``<prefix>_edges.ply`` and ``<prefix>_frames.ply``: where ``save_ply`` writes."""
    prefix = Path(path_prefix)
    return prefix.with_name(prefix.name + "_edges.ply"), prefix.with_name(prefix.name + "_frames.ply")


def save_ply(path_prefix: str | os.PathLike, lineset: Any, mesh: Any) -> tuple[Path, Path]:
    """Write ``<prefix>_edges.ply`` (the LineSet) and ``<prefix>_frames.ply`` (the mesh).

    Returns:
        The two paths, edges first.
    """
    return save_ply_files(*ply_paths(path_prefix), lineset, mesh)


def save_ply_files(edges_path: str | os.PathLike, frames_path: str | os.PathLike, lineset: Any,
                   mesh: Any) -> tuple[Path, Path]:
    """Write the LineSet to ``edges_path`` and the mesh to ``frames_path`` (both PLY)."""
    o3d = _open3d()
    edges_path, frames_path = Path(edges_path), Path(frames_path)
    if not o3d.io.write_line_set(str(edges_path), lineset):
        raise OSError(f"Open3D could not write {edges_path}")
    if not o3d.io.write_triangle_mesh(str(frames_path), mesh):
        raise OSError(f"Open3D could not write {frames_path}")
    return edges_path, frames_path


def render_png(
    path_png: str | os.PathLike,
    geometries: Sequence[Any],
    *,
    width: int = 960,
    height: int = 720,
) -> Path:
    """Render geometries off screen on a white background and save a raster image (PNG or JPEG).

    Open3D renders pixels, without text: no legend, title or axes.  For a figure with those, or a
    vector format (``.pdf``/``.svg``), draw the graph with matplotlib instead
    (``slam.viz.plot.plot_graph``, which ``slam view --png`` uses).

    Uses the legacy ``o3d.visualization.Visualizer`` with an invisible window; without a
    display Open3D falls back to EGL (Mesa's software rasterizer works, about 0.3 s for a
    small graph).  The view frames all geometry: from above (+z) when the scene is flat
    (z extent at most 10% of the x/y extent, which leaves room for the pose frames' axes),
    else obliquely with z up.

    Raises:
        ValueError: when the path's suffix is not ``.png``, ``.jpg`` or ``.jpeg`` (before any
            rendering).
        RenderError: when Open3D cannot create the window (no display and no EGL).
    """
    path = Path(path_png)
    if path.suffix.lower() not in RASTER_SUFFIXES:
        raise ValueError(f"{path}: Open3D renders raster images only ({', '.join(RASTER_SUFFIXES)}); "
                         "for .pdf or .svg draw the graph with slam.viz.plot.plot_graph")
    o3d = _open3d()
    geometries = list(geometries)
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        vis = o3d.visualization.Visualizer()
        if not vis.create_window(window_name="slam", width=int(width), height=int(height), visible=False):
            raise RenderError(
                "Open3D could not create an offscreen window: no display and no usable EGL/OpenGL "
                "(install Mesa's libEGL/libGL, or set DISPLAY to an X server such as Xvfb)"
            )
        try:
            option = vis.get_render_option()
            option.background_color = np.ones(3)
            option.line_width = 2.0
            option.light_on = True
            lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
            for geometry in geometries:
                vis.add_geometry(geometry, reset_bounding_box=True)  # the view fits the union of boxes
                box = geometry.get_axis_aligned_bounding_box()
                lo, hi = np.minimum(lo, box.min_bound), np.maximum(hi, box.max_bound)
            if geometries and np.all(np.isfinite(lo)):
                span = hi - lo
                view = vis.get_view_control()
                if span[2] > 0.1 * max(span[0], span[1], 1e-12):  # the pose frames alone make z > 0
                    view.set_front([0.6, -0.8, 0.7])
                    view.set_up([0.0, 0.0, 1.0])
                else:
                    view.set_front([0.0, 0.0, 1.0])
                    view.set_up([0.0, 1.0, 0.0])
                view.set_lookat(0.5 * (lo + hi))
                view.set_zoom(0.7)
            image = np.asarray(vis.capture_screen_float_buffer(do_render=True))
        finally:
            vis.destroy_window()
    if image.size == 0:
        raise RenderError("Open3D rendered an empty image")
    rgb = np.ascontiguousarray((np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    if not o3d.io.write_image(str(path), o3d.geometry.Image(rgb)):
        raise OSError(f"Open3D could not write {path}")
    return path


def show(geometries: Sequence[Any], *, window_name: str = "slam pose graph") -> None:
    """Open an interactive Open3D window (blocks until it is closed).

    Raises:
        RenderError: on Linux without ``DISPLAY`` or ``WAYLAND_DISPLAY``; draw to a file
            instead (``slam.viz.plot_graph``, the CLI's ``--png``).
    """
    import sys

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise RenderError(
            "no display to open an interactive window (DISPLAY and WAYLAND_DISPLAY are unset); "
            "draw it to a file instead with --png OUT.png|.pdf|.svg (slam.viz.plot_graph)"
        )
    o3d = _open3d()
    o3d.visualization.draw_geometries(list(geometries), window_name=window_name)
