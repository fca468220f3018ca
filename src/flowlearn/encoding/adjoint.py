r"""Training gradients through the encoding: approximate, full (discrete) adjoint, unrolled.

With :math:`z^* = z(\tau;\theta)` the decoder loss :math:`L(\theta) = l(y, D(z^*(\theta), \theta))` has
the total derivative (App. A.1)

.. math:: d_\theta L = \partial_\theta l + \partial_{z^*} l\; d_\theta z^* .

* **approx** (eqs. 11--12): drop :math:`d_\theta z^*`, i.e. detach the code.  Exact whenever
  :math:`\nabla_z l(z^*) = 0` (a stationary point), since the dropped term is
  :math:`\nabla_z l(z^*)^\top d_\theta z^*`.
* **full** (eqs. 8--10): the adjoint :math:`\lambda(\tau) = \nabla_{z^*} l`,
  :math:`\dot\lambda = \alpha\, \nabla_z^2 l\, \lambda`, and
  :math:`d_\theta L = \partial_\theta l - \int_0^\tau \alpha\, \lambda^\top \partial_\theta \nabla_z l\, dt`
  (up to the paper's sign convention for :math:`\lambda`).  We solve it *discretely*: backwards over
  the solver's own steps :math:`s_{n+1} = \Phi_n(s_n, \theta)`,

  .. math:: \lambda_n = (\partial_{s}\Phi_n)^\top \lambda_{n+1},\qquad
            g_\theta \mathrel{+}= (\partial_\theta \Phi_n)^\top \lambda_{n+1},

  each a vector--Jacobian product of one recomputed step, i.e. Hessian--vector products
  :math:`\nabla_z^2 l\,\lambda` and mixed products :math:`\partial_\theta\nabla_z l\,\lambda`.  For explicit
  Euler this *is* the Euler discretisation of (9)--(10); for any fixed-grid solver (and for AMD with
  its recorded step sizes, which are locally constant in :math:`\theta`) it is the exact gradient of
  the computed :math:`z^*`.  Memory: the states only, :math:`O(N B d)`, never the graph.
* **unrolled**: ordinary backprop through every solver step (reference; memory :math:`O(N)` graphs).
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["ADJOINTS", "AMDReplay", "FixedGridReplay", "adjoint_final_state", "unrolled_final_state"]

ADJOINTS = ("approx", "full", "unrolled")


class FixedGridReplay:
    """Step ``n`` of a fixed-grid solver over ``ts`` with a graph-building vector field."""

    def __init__(self, field, solver, ts: torch.Tensor):
        self.field, self.solver = field, solver
        self.times = torch.as_tensor(ts, dtype=torch.float64).tolist()

    @property
    def n_steps(self) -> int:
        return len(self.times) - 1

    def step(self, n: int, state: torch.Tensor) -> torch.Tensor:
        """The state after solver step ``n`` from ``state`` (one ``solver.step`` from ``times[n]`` to
        ``times[n+1]``), with a graph to ``state`` and the field's parameters."""
        t, h = self.times[n], self.times[n + 1] - self.times[n]
        return self.solver.step(self.field, t, state, h)


class AMDReplay:
    r"""Step ``n`` of a recorded AMD run: :math:`z \leftarrow z - \delta t_{n,b}\,\nabla_{z_b} l_b` for the
    samples that moved (``step_sizes[n, b] > 0``)."""

    def __init__(self, gradient, step_sizes: torch.Tensor):
        self.gradient, self.step_sizes = gradient, step_sizes

    @property
    def n_steps(self) -> int:
        return self.step_sizes.shape[0]

    def step(self, n: int, z: torch.Tensor) -> torch.Tensor:
        """The codes (B, ...) after step ``n`` from ``z``; ``z`` itself (the same object) when no sample moved."""
        delta = self.step_sizes[n].to(z.dtype)
        rows = (delta > 0).nonzero().flatten()
        if rows.numel() == 0:
            return z
        g = self.gradient(z.index_select(0, rows), create_graph=True, rows=rows)
        shape = (-1,) + (1,) * (z.ndim - 1)
        return z.index_add(0, rows, -delta[rows].reshape(shape) * g)


def unrolled_final_state(replay, state0: torch.Tensor) -> torch.Tensor:
    """Backprop-through-the-solver reference: replay every step keeping the whole graph."""
    state = state0
    for n in range(replay.n_steps):
        state = replay.step(n, state)
    return state


class _DiscreteAdjoint(torch.autograd.Function):
    """Forward: return the last stored state.  Backward: discrete adjoint sweep over ``replay``."""

    @staticmethod
    def forward(ctx, replay, states, *params):
        ctx.replay = replay
        ctx.params = params   # leaves owned by the decoder; kept alive by it anyway
        ctx.save_for_backward(states)
        return states[-1].detach().clone()

    @staticmethod
    def backward(ctx, grad_final):
        (states,) = ctx.saved_tensors
        params = list(ctx.params)
        lam = grad_final
        grads = [torch.zeros_like(p) for p in params]
        with torch.enable_grad():
            for n in range(ctx.replay.n_steps - 1, -1, -1):
                s = states[n].detach().requires_grad_(True)
                out = ctx.replay.step(n, s)
                if out is s:          # nothing moved in this step: identity map
                    continue
                vjp = torch.autograd.grad(out, [s] + params, lam, allow_unused=True)
                lam = vjp[0] if vjp[0] is not None else torch.zeros_like(lam)
                for g, v in zip(grads, vjp[1:]):
                    if v is not None:
                        g.add_(v)
        return (None, None, *grads)


def adjoint_final_state(replay, states: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    r"""Final state ``states[-1]`` whose backward pass runs the discrete adjoint over ``replay`` (a
    :class:`FixedGridReplay` or :class:`AMDReplay`); ``states`` (N + 1, B, ...) is the forward trajectory,
    ``states[n]`` before step ``n``; the ``params`` that require grad receive :math:`d_\theta z^*`-terms."""
    params = [p for p in params if p.requires_grad]
    return _DiscreteAdjoint.apply(replay, states.detach(), *params)
