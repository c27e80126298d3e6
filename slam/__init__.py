"""Differentiable nonlinear least squares for SLAM on top of ``liegeo`` (in progress; see the README)."""
