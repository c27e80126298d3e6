"""The problem doctor: what makes a ``Problem`` ill-posed, found before a solve.

``diagnose(problem)`` returns ``Finding``\\ s, each one line naming the variable table, the elements,
the cost and its instances, and what to do:

* ``non-finite`` (error): NaN or Inf in a variable's values, a cost's data, weight or robust loss;
* ``unused`` (error): free elements that no cost instance touches;
* ``disconnected`` (error): the free elements split into parts that no cost connects, and some part
  has nothing fixed that pins it (its placement relative to the rest is arbitrary);
* ``gauge`` (warning): one connected problem with nothing fixed whose ``H`` is singular (the solution
  is defined only up to a transformation; Levenberg-Marquardt's damping hides it);
* ``rank-deficient`` (warning): an element whose own block of ``H`` at the initial values is singular
  (a landmark seen once, a pose with only a position prior);
* ``information-scale`` (warning): a cost instance whose information is ≥ 10⁴ times larger or smaller
  than the median of its cost's instances.

Generic: it reads only the problem's structure (``Problem.structure``: the free elements of each
table, which elements each cost instance touches), its tensors (``slam.optim.inputs``), one
linearization at the initial values and each cost's ``Weight`` through ``whiten_jacobian``; no
group or cost is named.  ``check(problem)`` logs the warnings (``slam`` logger, WARNING, one line
each) and raises ``ProblemError`` (a ``ValueError``: one line, ``slam``'s exit code 2) on errors.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .optim.inputs import tensors_in
from .problem import NonFiniteError, Problem

log = logging.getLogger("slam.doctor")

Severity = Literal["error", "warning"]

DENSE_GAUGE_LIMIT = 2000
"""The most columns of one part whose ``H`` is tested for singularity by a dense eigen-decomposition;
a larger part without anything fixed is judged from its structure (no instance that touches it alone)."""
SINGULAR_RELATIVE = 1e-10
"""An eigenvalue of a Jacobi-scaled ``H`` (or of an element's block) below this times the largest is zero."""
SCALE_ORDERS = 4.0
"""Orders of magnitude between an instance's information and its cost's median that make a warning."""
SHOWN = 5
"""How many elements or instances a message names before "…"."""


@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing the doctor found: ``severity`` ("error" stops a solve, "warning" is printed), a short
    ``code`` and a one-line ``message`` that says where and what to do."""

    severity: Severity
    code: str
    message: str
    error: Exception | None = dataclasses.field(default=None, compare=False, repr=False)
    """The solver's own exception behind the finding, where one was raised (a ``NonFiniteError`` of the
    linearization, naming the cost, instance, variables and problem): ``check`` raises it as it is."""

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


class ProblemError(ValueError):
    """The doctor found errors: the message is the first one's (and how many more), ``findings`` all."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        errors = [f for f in findings if f.severity == "error"]
        more = f" (and {len(errors) - 1} more problem error(s))" if len(errors) > 1 else ""
        super().__init__(f"{errors[0].message}{more}" if errors else "the problem doctor found errors")


def check(problem: Problem, *, ignore: tuple[str, ...] = (), logger: logging.Logger | None = None) -> list[Finding]:
    """``diagnose(problem)`` less the findings whose ``code`` is in ``ignore``: each warning logged (one
    line, WARNING), then ``ProblemError`` if any finding is an error; returns the findings otherwise."""
    findings = [f for f in diagnose(problem) if f.code not in ignore]
    for finding in findings:
        if finding.severity == "warning":
            (logger or log).warning("warning: %s", finding.message)
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        if errors[0].error is not None:  # what the solve itself would raise, with its fields
            raise errors[0].error
        raise ProblemError(findings)
    return findings


def diagnose(problem: Problem) -> list[Finding]:
    """Every finding about ``problem`` at its initial values (of the first problem of a batch)."""
    findings = _non_finite(problem)
    graph = _Graph(problem)
    findings += graph.unused()
    h = None
    if not findings:  # a linearization would only repeat the non-finite finding
        try:
            h = problem.linearize(problem.initial_values())[0][0].detach()
        except NonFiniteError as error:
            findings.append(Finding("error", "non-finite", f"{error}; fix the initial values or the cost's data", error))
    findings += graph.parts(h)
    if h is not None:
        findings += _rank_deficient_blocks(problem, graph, h)
        findings += _information_scale(problem)
    return findings


# ---------------------------------------------------------------------------------------- findings


def _non_finite(problem: Problem) -> list[Finding]:
    out = []
    for variable in problem.variables:
        data = variable.value.data.detach()
        bad = ~torch.isfinite(data).reshape(*data.shape[: variable.value.ndim], -1).all(-1)
        if bool(bad.any()):
            elements = torch.nonzero(bad.reshape(-1, variable.num).any(0)).squeeze(-1).tolist()
            out.append(Finding("error", "non-finite", f"variable '{variable.name}' has non-finite values at "
                                                      f"{_names(variable.name, elements)}: give them finite initial values"))
    for c, cost in enumerate(problem.costs):
        items = [(f"data '{key}'", value) for key, value in cost.data.items()]
        items += [("weight", cost.weight), ("robust loss", cost.loss)]
        for what, item in items:
            for tensor in tensors_in(item):
                tensor = tensor.detach()
                if bool(torch.isfinite(tensor).all()):
                    continue
                where = _instances_of(tensor, cost.num)
                out.append(Finding("error", "non-finite", f"cost '{cost.name}' (cost {c}) has non-finite {what}"
                                                          f"{where}: fix or drop those measurements"))
                break
    return out


def _instances_of(tensor: Tensor, num: int) -> str:
    """``" at instance(s) …"`` where ``tensor`` has an instance axis ``(E, …)`` or ``(B, E, …)``, else ""."""
    bad = ~torch.isfinite(tensor)
    for axis in range(min(2, tensor.dim())):
        if tensor.shape[axis] == num:
            rows = bad.movedim(axis, 0).reshape(num, -1).any(-1)
            return f" at instance(s) {_list(torch.nonzero(rows).squeeze(-1).tolist())}"
    return ""


class _Graph:
    """Free elements as nodes (one ordinal across tables), cost instances as edges."""

    def __init__(self, problem: Problem):
        self.problem = problem
        structure = problem.structure
        self.tables = structure.tables
        self.node_offset = np.cumsum([0] + [t.num_free for t in self.tables])
        self.num_nodes = int(self.node_offset[-1])
        rows, cols = [], []
        self.touched = np.zeros(self.num_nodes, dtype=bool)
        self.anchored = np.zeros(self.num_nodes, dtype=bool)  # in an instance with a fixed element
        self.alone = np.zeros(self.num_nodes, dtype=bool)  # in an instance that touches it alone
        for cost in problem.costs:
            nodes = np.stack([self._nodes(problem.position(ref.variable), ref.index) for ref in cost.variables], -1)
            valid = nodes >= 0
            first = nodes[np.arange(nodes.shape[0]), valid.argmax(-1)]
            for k in range(nodes.shape[1]):
                keep = valid[:, k]
                rows.append(first[keep])
                cols.append(nodes[keep, k])
            self.touched[nodes[valid]] = True
            some_fixed = valid.any(-1) & ~valid.all(-1)
            self.anchored[nodes[valid & some_fixed[:, None]]] = True
            self.alone[nodes[valid & (valid.sum(-1) == 1)[:, None] & ~some_fixed[:, None]]] = True
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        r, c = np.concatenate(rows), np.concatenate(cols)
        adjacency = coo_matrix((np.ones(r.shape[0]), (r, c)), shape=(self.num_nodes, self.num_nodes))
        self.num_parts, self.part = connected_components(adjacency, directed=False)

    def _nodes(self, t: int, index: Tensor) -> np.ndarray:
        ordinal = self.tables[t].ordinal[index.cpu()].numpy()
        return np.where(ordinal >= 0, ordinal + self.node_offset[t], -1)

    def element(self, node: int) -> tuple[str, int]:
        t = int(np.searchsorted(self.node_offset, node, side="right") - 1)
        return self.problem.variables[t].name, int(self.tables[t].free[node - self.node_offset[t]])

    def describe(self, nodes: np.ndarray) -> str:
        named = [self.element(int(k)) for k in nodes[:SHOWN]]
        text = ", ".join(f"{name}[{i}]" for name, i in named)
        return text + (f", … ({len(nodes)} in all)" if len(nodes) > SHOWN else "")

    def columns(self, nodes: np.ndarray) -> np.ndarray:
        out = []
        for node in nodes:
            t = int(np.searchsorted(self.node_offset, node, side="right") - 1)
            table = self.tables[t]
            start = table.offset + (int(node) - int(self.node_offset[t])) * table.dim
            out.append(np.arange(start, start + table.dim))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def unused(self) -> list[Finding]:
        out = []
        for t, table in enumerate(self.tables):
            span = slice(int(self.node_offset[t]), int(self.node_offset[t + 1]))
            idle = np.nonzero(~self.touched[span])[0]
            if idle.size:
                name = self.problem.variables[t].name
                elements = table.free[torch.as_tensor(idle)].tolist()
                out.append(Finding("error", "unused", f"variable '{name}': {len(elements)} free element(s) no cost "
                                                      f"touches ({_names(name, elements)}): fix them or give them a cost"))
        return out

    def parts(self, h: Tensor | None) -> list[Finding]:
        """``disconnected`` (several parts, some not pinned) or ``gauge`` (one part, not pinned)."""
        parts = [np.nonzero((self.part == p) & self.touched)[0] for p in range(self.num_parts)]
        parts = sorted((p for p in parts if p.size), key=len, reverse=True)
        loose = []
        for nodes in parts:
            if self.anchored[nodes].any():
                continue
            null, how = self._null_dimension(nodes, h)
            if null:
                loose.append((nodes, null, how))
        if not loose:
            return []
        if len(parts) > 1:
            sizes = ", ".join(str(len(p)) for p in parts[:8]) + (", …" if len(parts) > 8 else "")
            what = "; ".join(f"{self.describe(nodes)}{_directions(null, how)}" for nodes, null, how in loose[:3])
            return [Finding("error", "disconnected",
                            f"the free variables form {len(parts)} disconnected parts (sizes {sizes} free elements) and "
                            f"{len(loose)} of them have nothing fixed: {what}; connect the parts with costs "
                            "(edges) or fix one element in each")]
        nodes, null, how = loose[0]
        return [Finding("warning", "gauge",
                        f"nothing is fixed and no cost pins absolute values{_directions(null, how)}: the solution is "
                        f"defined only up to a transformation (LM's damping hides it; implicit gradients need it "
                        f"fixed); fix elements (Variable.fix, e.g. {self.describe(nodes[:1])}) or add priors until none is left")]

    def _null_dimension(self, nodes: np.ndarray, h: Tensor | None) -> tuple[int, str]:
        """Directions in which the part's ``H`` is singular (0: none), and how that was judged."""
        cols = self.columns(nodes)
        if h is None or cols.size > DENSE_GAUGE_LIMIT:
            return (0 if self.alone[nodes].any() else 1), "structure"
        local = np.full(self.problem.structure.n, -1)
        local[cols] = np.arange(cols.size)
        pattern = self.problem.structure.pattern
        r, c = local[pattern.rows.cpu().numpy()], local[pattern.cols.cpu().numpy()]
        keep = torch.as_tensor((r >= 0) & (c >= 0))
        dense = torch.zeros(cols.size, cols.size, dtype=torch.float64)
        dense[torch.as_tensor(r)[keep], torch.as_tensor(c)[keep]] = h.cpu().double()[keep]
        dense = dense + dense.tril(-1).mT
        diag = dense.diagonal()
        if bool((diag <= 0).any()):
            return int((diag <= 0).sum()), "H"
        scale = diag.rsqrt()
        eig = torch.linalg.eigvalsh(dense * scale[:, None] * scale[None, :])
        return int((eig <= SINGULAR_RELATIVE * eig[-1]).sum()), "H"


def _directions(null: int, how: str) -> str:
    return " (judged from its structure)" if how == "structure" else f" (H is singular in {null} direction(s))"


def _rank_deficient_blocks(problem: Problem, graph: _Graph, h: Tensor) -> list[Finding]:
    structure = problem.structure
    rows, cols = structure.pattern.rows.cpu(), structure.pattern.cols.cpu()
    values = h.cpu().double()
    out = []
    for t, table in enumerate(structure.tables):
        if table.num_free == 0:
            continue
        end = table.offset + table.num_free * table.dim
        inside = (rows >= table.offset) & (rows < end)
        r, c = rows[inside] - table.offset, cols[inside] - table.offset
        same = (r // table.dim) == (c // table.dim)
        element = r[same] // table.dim
        blocks = torch.zeros(table.num_free, table.dim, table.dim, dtype=torch.float64)
        blocks[element, r[same] % table.dim, c[same] % table.dim] = values[inside][same]
        blocks = blocks + blocks.tril(-1).mT
        eig = torch.linalg.eigvalsh(blocks)
        top = eig[:, -1]
        rank = (eig > SINGULAR_RELATIVE * top.clamp_min(0).unsqueeze(-1)).sum(-1) * (top > 0)
        span = slice(int(graph.node_offset[t]), int(graph.node_offset[t + 1]))
        bad = torch.nonzero((rank < table.dim) & torch.as_tensor(graph.touched[span])).squeeze(-1)
        if bad.numel():
            name = problem.variables[t].name
            elements = table.free[bad].tolist()
            ranks = sorted(set(rank[bad].tolist()))
            out.append(Finding("warning", "rank-deficient",
                               f"variable '{name}': {len(elements)} element(s) whose own block of H is rank "
                               f"{'/'.join(map(str, ranks))} of {table.dim} at the initial values "
                               f"({_names(name, elements)}): their costs do not determine them alone (e.g. a landmark "
                               "seen once, a pose with only a position prior); add observations or priors, or fix them"))
    return out


def _information_scale(problem: Problem) -> list[Finding]:
    out = []
    residuals = problem.residuals(problem.initial_values())
    for c, (cost, r) in enumerate(zip(problem.costs, residuals)):
        if cost.weight is None or cost.num < 3:
            continue
        m = r.shape[-1]
        with torch.no_grad():
            eye = torch.eye(m, dtype=r.dtype, device=r.device)
            square_root = cost.weight.whiten_jacobian(eye)  # L, broadcast over the instances
            size = square_root.double().pow(2).sum((-1, -2))  # trace(LᵀL): the information's scale
        if size.dim() == 0 or size.shape[-1] != cost.num:
            continue  # one weight for every instance
        size = size.reshape(-1, cost.num).amax(0).cpu()
        orders = torch.log10(size)
        median = float(orders[torch.isfinite(orders)].median()) if bool(torch.isfinite(orders).any()) else 0.0
        off = (orders - median).abs()
        bad = torch.nonzero(~(off < SCALE_ORDERS)).squeeze(-1)
        if bad.numel():
            shown = []
            for e in bad[:SHOWN].tolist():
                variables = ", ".join(f"{ref.variable.name}[{int(ref.index[e])}]" for ref in cost.variables)
                shown.append(f"{e} ({variables}; 10^{float(orders[e] - median):+.1f})")
            more = f", … ({bad.numel()} in all)" if bad.numel() > SHOWN else ""
            out.append(Finding("warning", "information-scale",
                               f"cost '{cost.name}' (cost {c}): instance(s) {'; '.join(shown)}{more} have information "
                               f"≥ 10^{SCALE_ORDERS:g} times off the median of the cost's instances: check their units "
                               "or covariance/information convention"))
    return out


def _list(items: list[int]) -> str:
    return ", ".join(map(str, items[:SHOWN])) + (f", … ({len(items)} in all)" if len(items) > SHOWN else "")


def _names(name: str, elements: list[int]) -> str:
    return ", ".join(f"{name}[{i}]" for i in elements[:SHOWN]) + (f", … ({len(elements)} in all)"
                                                                  if len(elements) > SHOWN else "")
