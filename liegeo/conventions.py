"""The conventions of ``liegeo`` and ``slam``, stated once.

Every module of the project follows this page; docstrings elsewhere refer to it
instead of restating it.

Storage
-------
A group element is a frozen dataclass holding one plain tensor ``data`` of shape
``(*batch, param_dim)``; ``batch`` is any number of leading axes (possibly none)
and broadcasts like any torch operation.  Translation always comes first:

=========  ==========  ==============================================  ==========  ===========
group      param_dim   ``data[..., :]``                                tangent     matrix
=========  ==========  ==============================================  ==========  ===========
SO2        2           ``(cos θ, sin θ)``                              1: ``θ``     2 x 2
SE2        4           ``(x, y, cos θ, sin θ)``                        3: ``(vx, vy, θ)``  3 x 3
SO3        4           unit quaternion ``(qx, qy, qz, qw)``            3: ``ω``     3 x 3
SE3        7           ``(tx, ty, tz, qx, qy, qz, qw)``                6: ``(v, ω)``  4 x 4
Euclidean  n           the vector itself                               n           (n+1) x (n+1)
=========  ==========  ==============================================  ==========  ===========

Quaternions are in **(x, y, z, w)** order everywhere in the public API and in
storage, as in g2o, TUM, scipy and pypose.  ``q`` and ``-q`` are the same
rotation; no sign is enforced in storage, and ``log`` picks the rotation angle in
``[0, π]``.

Construction
------------
The constructor from raw storage (``SE3(data)``, ``SO3(data)``, ``SE2(data)``,
``SO2(data)``) **normalizes**: a rotation part (the quaternion, or ``(cos θ, sin θ)``)
whose norm is more than ``liegeo._base.KEEP_ULPS`` (8) machine epsilons of its dtype
away from 1 is divided by its norm, as GTSAM's ``Rot3::Quaternion`` and g2o's
readers do; rotation parts within that are kept bit for bit (round trips stay
exact, and the very tensor is kept: a leaf that requires grad stays the leaf).
So ``SE3(torch.tensor([0, 0, 0, 0, 0, 0, 5.]))`` is the identity, never an element
whose operations silently scale by 25.  A zero or non-finite rotation part has no
rotation to normalize to: ``ValueError`` names its index.  Data that requires grad is
never rescaled (that would change what autograd differentiates); it is refused
instead where its norm is off by more than ``liegeo._base.GRAD_UNIT_TOLERANCE``
(1e-5 in float64, 1e-3 in float32): normalize such data differentiably with
``SO3.from_quaternion`` / ``SE3.from_translation_quaternion``.  (Translations are not
checked: a non-finite pose reaches the solvers, whose ``NonFiniteError`` names the
cost term.)  This runs only for plain tensors whose values can be read: never under
``torch.func`` transforms (vmap, jacrev, grad), tracing or ``torch.compile``, where
the data is taken as given, and never for the results of the groups' own operations
(compose, inverse, exp, retract, indexing, ...), which are on the group by
construction and use the unchecked ``_wrap``.

Tangent spaces
--------------
Tangent vectors put **translation first, then rotation**: ``ξ = (v, ω)`` for SE3
and ``(vx, vy, θ)`` for SE2, where ``v`` is the translational part of the twist
(not the translation of ``Exp(ξ)``; that is ``J_l(ω) v``).  Rotation components
are full angles in radians (``|ω| = θ``, never ``θ/2``).

``Exp(ξ)`` is the exponential map ``R^k -> G`` and ``Log`` its inverse on the
principal branch (rotation angle in ``[0, π]``).

Perturbations and Jacobians
---------------------------
Perturbations are on the **right**::

    x ⊕ δ = x · Exp(δ)          (retract)
    a ⊖ b = Log(b⁻¹ · a)         so ``b.local(a) = Log(b⁻¹ a)`` and ``b ⊕ b.local(a) = a``.

The Jacobian of a function ``f`` with respect to a group argument ``x`` is
``J = ∂ f(x · Exp(δ)) / ∂δ`` at ``δ = 0``, where a group-valued output is itself
read through its right tangent: ``J = ∂ Log(f(x)⁻¹ f(x · Exp(δ))) / ∂δ``.
Point and vector arguments and outputs use their plain coordinates.  Jacobians
have shape ``(*batch, out_dim, in_dim)``.  They are requested with
``jacobians=True`` and returned after the value::

    C, (J_A, J_B) = A.compose(B, jacobians=True)     # J_A = Ad(B⁻¹), J_B = I
    Ti, J = T.inverse(jacobians=True)                 # J = -Ad(T)
    D, (J_A, J_B) = A.between(B, jacobians=True)      # D = A⁻¹B; J_A = -Ad(D⁻¹), J_B = I
    q, (J_T, J_p) = T.act(p, jacobians=True)          # J_T = R · G(p), J_p = R
    xi, J = T.log(jacobians=True)                     # J = J_r⁻¹(xi)
    T, J = SE3.exp(xi, jacobians=True)                # J = J_r(xi)
    Y, (J_X, J_d) = X.retract(d, jacobians=True)      # J_X = Ad(Exp(-d)), J_d = J_r(d)
    d, (J_A, J_B) = A.local(B, jacobians=True)        # J_A = -J_l⁻¹(d), J_B = J_r⁻¹(d)

with the adjoint ``Ad(x)`` defined by ``x · Exp(ξ) · x⁻¹ = Exp(Ad(x) ξ)``, so in
``(v, ω)`` order ``Ad(T) = [[R, [t]× R], [0, R]]`` for SE3 and
``[[R, (t_y, -t_x)ᵀ], [0, 1]]`` for SE2.  ``J_r(ξ)`` and ``J_l(ξ)`` are the right
and left Jacobians of ``Exp``: ``Exp(ξ + ε) ≈ Exp(ξ) Exp(J_r(ξ) ε) ≈ Exp(J_l(ξ) ε) Exp(ξ)``.
These same Jacobians are what autograd gives when differentiating through
``retract`` at ``δ = 0``; the test suite checks that for every operation.

Numerics
--------
All operations accept float32 and float64 on any device, and contain no
data-dependent Python branches (so they run under ``torch.func.vmap``, ``jacrev``
and CUDA graphs).  Series expansions replace closed forms below a per-dtype
threshold (``θ² < 1``), so values, analytic Jacobians and autograd gradients stay
finite and accurate at exactly ``θ = 0`` and up to ``θ = π``.

File layouts
------------
* **g2o** ``VERTEX_SE3:QUAT id x y z qx qy qz qw`` and ``EDGE_SE3:QUAT i j x y z qx
  qy qz qw`` carry exactly the SE3 storage vector.  The 21 numbers that follow an
  edge are the upper triangle, row by row, of a 6 x 6 information matrix ``Ω`` in
  ``[t, R]`` order, which is our tangent order, so ``Ω`` is used unchanged, with no
  block swap (GTSAM, whose tangent is ``[ω, v]``, swaps the blocks).
* **g2o** ``VERTEX_SE2 id x y θ`` and ``EDGE_SE2 i j x y θ`` give ``SE2.from_xytheta``;
  the 6 numbers after an edge are the upper triangle of a 3 x 3 ``Ω`` over
  ``(x, y, θ)``, again our tangent order.
* **TUM** ``timestamp tx ty tz qx qy qz qw``: columns 1..7 are the SE3 storage vector.
* **KITTI**: 12 numbers, the row-major top 3 x 4 block of ``SE3.matrix()``.

Relative-pose (between) error
-----------------------------
For an edge ``i -> j`` with measurement ``Z`` and information ``Ω`` the residual is
``e = Log(Z⁻¹ · X_i⁻¹ · X_j)`` (full-angle rotation part) and ``chi² = Σ eᵀ Ω e``.
This is GTSAM's ``BetweenFactor`` error.  g2o's own error uses the translation of
``Z⁻¹X_i⁻¹X_j`` and, in 3D, the quaternion vector part (≈ θ/2), so chi² values
printed by g2o differ from ours on the rotation terms; the optimum differs only
by that reweighting.
"""
