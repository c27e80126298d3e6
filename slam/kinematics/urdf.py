"""URDF robots: ``read_urdf`` parses the kinematic tree (links, joints, origins, axes, limits).

Only what kinematics needs is read: the ``<link>`` and ``<joint>`` children of ``<robot>``; visual,
collision, inertial, transmission, gazebo and other elements are skipped (meshes are never
loaded).  Joint types: ``revolute``, ``continuous``, ``prismatic`` and ``fixed``; any other
(``floating``, ``planar``) is refused.  ``<origin rpy="r p y">`` is the rotation
``Rz(y) Ry(p) Rx(r)`` (URDF's fixed-axis roll, pitch, yaw); a missing origin is the identity, a
missing axis ``(1, 0, 0)``, as the URDF specification says.  A revolute or prismatic joint's
``<safety_controller soft_lower_limit=... soft_upper_limit=...>`` gives its soft limits
(``Joint.soft_lower``, ``Joint.soft_upper``; ``None`` where an attribute is absent, not the
specification's default of 0).  ``<mimic>`` joints (coupled to another
joint) are refused rather than silently treated as independent.  Every malformed or unsupported element
raises ``URDFError`` naming the file, the line and the element.

Input hardening: a DTD (``<!DOCTYPE``) or entity declaration is refused before it is expanded (a URDF
needs neither, and they allow billion-laughs and external-entity attacks), with expat's own handlers
rather than another dependency; numbers follow the ASCII grammar of ``slam.io.errors.NUMBER`` (no
``1_0``, no non-ASCII digits) and must be finite; a directory or unreadable file is a ``URDFError``
too (a missing one stays ``FileNotFoundError``, which names it).
"""

from __future__ import annotations

import dataclasses
import math
import os
import xml.etree.ElementTree as ET
import xml.parsers.expat

from ..io.errors import NUMBER, FormatError
from ..io.text import read_bytes

JOINT_TYPES = ("revolute", "continuous", "prismatic", "fixed")


class URDFError(ValueError):
    """A malformed or unsupported URDF; names the file, the line and the element."""

    def __init__(self, path: str, line: int | None, element: str, reason: str):
        self.path, self.line, self.element, self.reason = path, line, element, reason
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {element}: {reason}")


@dataclasses.dataclass(frozen=True)
class Joint:
    name: str
    type: str
    parent: str
    child: str
    xyz: tuple[float, float, float]
    """Origin translation (metres), in the parent link's frame."""
    rpy: tuple[float, float, float]
    """Origin rotation: roll, pitch, yaw (radians), ``R = Rz(yaw) Ry(pitch) Rx(roll)``."""
    axis: tuple[float, float, float]
    """Unit axis in the joint frame (after the origin)."""
    lower: float
    upper: float
    """Position limits (radians or metres); ±inf for continuous and fixed joints."""
    soft_lower: float | None = None
    soft_upper: float | None = None
    """``<safety_controller>`` soft limits (same units), ``None`` where the URDF gives none."""

    @property
    def movable(self) -> bool:
        return self.type != "fixed"


@dataclasses.dataclass(frozen=True)
class Robot:
    """A kinematic tree: links by name, joints in topological order (every parent before its child)."""

    name: str
    root: str
    links: tuple[str, ...]
    joints: tuple[Joint, ...]
    source: str | None = None

    @property
    def movable_joints(self) -> tuple[Joint, ...]:
        """The joints that take a position, in the order of the configuration vector ``q``."""
        return tuple(j for j in self.joints if j.movable)

    @property
    def dof(self) -> int:
        return len(self.movable_joints)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.movable_joints)


def _parse(path: str) -> tuple[ET.Element, dict[ET.Element, int]]:
    """The XML tree and each element's line (ElementTree itself keeps none), via expat directly."""
    parser, builder, lines = xml.parsers.expat.ParserCreate(), ET.TreeBuilder(), {}

    def start(tag: str, attrs: dict[str, str]) -> None:
        lines[builder.start(tag, attrs)] = parser.CurrentLineNumber

    def refuse(*_: object) -> None:  # raised out of parser.Parse, before any entity is expanded
        raise URDFError(path, parser.CurrentLineNumber, "XML", "DTDs and entity declarations are not allowed "
                                                               "(a URDF needs none; they can expand without bound)")

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        data = read_bytes(path)
    except FormatError as error:  # a directory, or unreadable
        raise URDFError(path, None, "file", error.reason) from None
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as error:
        raise URDFError(path, error.lineno, "XML", f"{xml.parsers.expat.ErrorString(error.code)} "
                                                   f"(column {error.offset + 1})") from None
    return builder.close(), lines


def _numbers(path: str, line: int | None, element: ET.Element, attribute: str, count: int,
             default: str | None) -> tuple[float, ...]:
    text = element.get(attribute, default)
    what = f"<{element.tag}{_named(element)}> attribute {attribute}"
    if text is None:
        raise URDFError(path, line, what, "is missing")
    tokens = text.split()
    if not all(NUMBER.match(t) for t in tokens):  # float() would also take "1_0", "٣", "inf"
        raise URDFError(path, line, what, f"is not {count} numbers: {text[:80]!r}")
    values = tuple(float(t) for t in tokens)
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise URDFError(path, line, what, f"needs {count} finite numbers, got {text[:80]!r}")
    return values


def _named(element: ET.Element) -> str:
    return f' name="{element.get("name")}"' if element.get("name") else ""


def read_urdf(path: str | os.PathLike[str]) -> Robot:
    """Parse ``path`` into a ``Robot``.  Raises ``URDFError`` for anything it cannot use exactly."""
    path_str = str(path)
    root, lines = _parse(path_str)
    if root.tag != "robot":
        raise URDFError(path_str, lines.get(root), f"<{root.tag}>", "the root element must be <robot>")

    links: list[str] = []
    for element in root.findall("link"):
        name = element.get("name")
        if not name:
            raise URDFError(path_str, lines.get(element), "<link>", "has no name")
        if name in links:
            raise URDFError(path_str, lines.get(element), f'<link name="{name}">', "duplicate link name")
        links.append(name)

    joints: list[Joint] = []
    for element in root.findall("joint"):
        line = lines.get(element)
        name = element.get("name")
        label = f"<joint{_named(element)}>"
        if not name:
            raise URDFError(path_str, line, "<joint>", "has no name")
        if any(j.name == name for j in joints):
            raise URDFError(path_str, line, label, "duplicate joint name")
        kind = element.get("type")
        mimic = element.find("mimic")
        if mimic is not None:  # its position would follow another joint's: not modelled, so refused
            raise URDFError(path_str, lines.get(mimic, line), f"{label} <mimic>", "mimic joints are not supported")
        if kind not in JOINT_TYPES:
            raise URDFError(path_str, line, label, f"unsupported type {kind!r} (supported: {', '.join(JOINT_TYPES)})")
        ends = {}
        for end in ("parent", "child"):
            tag = element.find(end)
            if tag is None or not tag.get("link"):
                raise URDFError(path_str, line, label, f"needs <{end} link=...>")
            if tag.get("link") not in links:
                raise URDFError(path_str, lines.get(tag, line), f"{label} <{end}>",
                                f"link {tag.get('link')!r} is not defined")
            ends[end] = tag.get("link")
        origin = element.find("origin")
        xyz = _numbers(path_str, lines.get(origin), origin, "xyz", 3, "0 0 0") if origin is not None else (0.0, 0.0, 0.0)
        rpy = _numbers(path_str, lines.get(origin), origin, "rpy", 3, "0 0 0") if origin is not None else (0.0, 0.0, 0.0)
        # the same rotation with angles beyond a turn brought into [-π, π]: SO3.exp squares them
        # (nan beyond ~1e154); ordinary angles keep every bit
        rpy = tuple(math.remainder(a, 2 * math.pi) if abs(a) > 2 * math.pi else a for a in rpy)
        axis_element = element.find("axis")
        axis = _numbers(path_str, lines.get(axis_element), axis_element, "xyz", 3, "1 0 0") if axis_element is not None else (1.0, 0.0, 0.0)
        norm = math.hypot(*axis)  # no overflow for 1e200, no underflow for 1e-200
        if kind != "fixed" and not norm > 0:
            raise URDFError(path_str, lines.get(axis_element, line), f"{label} <axis>", "is the zero vector")
        axis = tuple(a / norm for a in axis) if norm > 0 else axis
        lower, upper = -math.inf, math.inf
        if kind in ("revolute", "prismatic"):
            limit = element.find("limit")
            if limit is None:
                raise URDFError(path_str, line, label, f"a {kind} joint needs <limit lower=... upper=...>")
            lower = _numbers(path_str, lines.get(limit), limit, "lower", 1, "0")[0]
            upper = _numbers(path_str, lines.get(limit), limit, "upper", 1, "0")[0]
            if lower > upper:
                raise URDFError(path_str, lines.get(limit, line), f"{label} <limit>",
                                f"lower {lower} is above upper {upper}")
        soft: list[float | None] = [None, None]
        safety = element.find("safety_controller")
        if safety is not None and kind in ("revolute", "prismatic"):
            soft = [_numbers(path_str, lines.get(safety), safety, f"soft_{side}_limit", 1, None)[0]
                    if safety.get(f"soft_{side}_limit") is not None else None for side in ("lower", "upper")]
            if soft[0] is not None and soft[1] is not None and soft[0] > soft[1]:
                raise URDFError(path_str, lines.get(safety, line), f"{label} <safety_controller>",
                                f"soft_lower_limit {soft[0]} is above soft_upper_limit {soft[1]}")
        joints.append(Joint(name, kind, ends["parent"], ends["child"], xyz, rpy, axis, lower, upper, *soft))

    children = [j.child for j in joints]
    for j in joints:
        if children.count(j.child) > 1:
            raise URDFError(path_str, None, f'<link name="{j.child}">', "is the child of more than one joint")
    roots = [name for name in links if name not in children]
    if len(roots) != 1:
        raise URDFError(path_str, None, "<robot>", f"needs exactly one root link (a link no joint moves), got "
                                                   f"{roots or 'none (the joints form a cycle)'}")
    # Topological order: breadth first from the root, so every joint comes after its parent's joint.
    ordered, frontier = [], [roots[0]]
    while frontier:
        link = frontier.pop(0)
        for j in joints:
            if j.parent == link:
                ordered.append(j)
                frontier.append(j.child)
    unreached = [name for name in links if name != roots[0] and name not in {j.child for j in ordered}]
    if unreached:
        raise URDFError(path_str, None, "<robot>", f"links not connected to the root {roots[0]!r}: {unreached}")
    return Robot(root.get("name", ""), roots[0], tuple(links), tuple(ordered), source=path_str)
