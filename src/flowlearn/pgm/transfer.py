r"""Exact inference on grid models by a column transfer matrix (beyond enumeration).

A ``rows x cols`` grid model is cut into ``L`` slices of ``w = min(rows, cols)`` nodes (grid columns if
``rows <= cols``, else grid rows), slice states :math:`s \in [c]^w`.  With the slice energy
:math:`\ell_t(s) = \sum_{p} \theta^{(t,p)}[s_p] + \sum_{p} \theta^{(t,p),(t,p+1)}[s_p, s_{p+1}]` and the coupling
of neighbouring slices :math:`K(s, s') = \sum_p \theta^{(t,p),(t+1,p)}[s_p, s'_p]`, the forward and backward messages

.. math::
    \alpha_0 = -\ell_0, \quad
    \alpha_{t+1}(s') = -\ell_{t+1}(s') + \log\sum_s e^{\alpha_t(s) - K(s, s')}, \qquad
    \beta_{L-1} = 0, \quad
    \beta_t(s) = \log\sum_{s'} e^{-K(s, s') - \ell_{t+1}(s') + \beta_{t+1}(s')}

give :math:`\log Z^* = \log\sum_s e^{\alpha_{L-1}(s)}` and the slice marginals
:math:`P^*(x_t = s) = e^{\alpha_t(s) + \beta_t(s) - \log Z^*}`.  The matrix :math:`e^{-K}` is never formed: it
factorises over positions and is applied one position at a time, at cost :math:`O(L\,w\,c^{w+1})` in all.

The mean energy is carried along the forward pass in the expectation semiring: with :math:`\varepsilon_t(s)` the
expected energy of slices ``0..t`` given :math:`x_t = s`, a step :math:`a \to b` with weight :math:`\theta[a, b]`
updates :math:`\varepsilon'(b) = \sum_a \mathrm{softmax}_a(\alpha(a) - \theta[a,b])\,(\varepsilon(a) + \theta[a, b])`,
and :math:`\langle P^*, E\rangle = \sum_s \mathrm{softmax}(\alpha_{L-1})(s)\,\varepsilon_{L-1}(s)`.  Any
:class:`~flowlearn.pgm.models.PairwiseModel` with ``grid_shape`` whose edges join 4-neighbours is accepted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .._checks import UserInputError, UserTypeError, check_choice, check_int
from .enumeration import MAX_CONFIGURATIONS, ExactResult, exact_inference
from .models import PairwiseModel

__all__ = ["MAX_COLUMN_STATES", "MAX_MESSAGE_BYTES", "TransferMatrixResult", "exact_inference_auto", "exact_method",
           "transfer_matrix_feasible", "transfer_matrix_inference"]

#: Largest number of slice states :math:`c^w` (2**16: width 16 for c = 2, 10 for c = 3, 8 for c = 4).
MAX_COLUMN_STATES = 2**16
#: Largest memory for the stored backward messages, :math:`8 L c^w` bytes (1 GiB).
MAX_MESSAGE_BYTES = 2**30


@dataclass
class TransferMatrixResult(ExactResult):
    """:class:`~flowlearn.pgm.enumeration.ExactResult` of the transfer-matrix method, with the nodes per slice
    ``width`` :math:`w` (the shorter grid side), the number of slices ``length`` :math:`L`, ``column_states``
    :math:`c^w` and ``transposed`` (the slices are grid rows, ``rows > cols``)."""

    width: int = 0
    length: int = 0
    column_states: int = 0
    transposed: bool = False
    method: str = "transfer_matrix"


def _check_model(model) -> PairwiseModel:
    if not isinstance(model, PairwiseModel):
        raise UserTypeError(f"model must be a PairwiseModel, got {type(model).__name__}")
    return model


def _layout(model: PairwiseModel):
    """Slices of the grid and the edges sorted into intra-slice and inter-slice tables."""
    if model.grid_shape is None:
        raise UserInputError("model.grid_shape must be set for the transfer-matrix method (use ising_grid or "
                             "potts_grid, or pass grid_shape=(rows, cols)), got None")
    rows, cols = model.grid_shape
    transposed = rows > cols
    width, length = (cols, rows) if transposed else (rows, cols)
    c = model.num_labels
    zero = torch.zeros(c, c, dtype=torch.float64, device=model.device)
    intra = [[None] * max(width - 1, 0) for _ in range(length)]  # [t][p]: table [s_p, s_{p+1}]
    inter = [[None] * width for _ in range(max(length - 1, 0))]  # [t][p]: table [x_{t,p}, x_{t+1,p}]

    def coords(k: int) -> tuple[int, int]:
        r, q = divmod(k, cols)
        return (r, q) if transposed else (q, r)  # (slice, position)

    tables = model.pairwise.to(torch.float64)
    for e, (i, j) in enumerate(model.edges.tolist()):
        (ti, pi), (tj, pj) = coords(i), coords(j)
        tab = tables[e]
        if (ti, pi) > (tj, pj):
            (ti, pi), (tj, pj), tab = (tj, pj), (ti, pi), tab.T
        if ti == tj and pj == pi + 1:
            intra[ti][pi] = tab if intra[ti][pi] is None else intra[ti][pi] + tab
        elif pi == pj and tj == ti + 1:
            inter[ti][pi] = tab if inter[ti][pi] is None else inter[ti][pi] + tab
        else:
            raise UserInputError(f"model.edges must join 4-neighbours of the {rows} x {cols} grid for the "
                                 f"transfer-matrix method, got edge ({i}, {j})")
    inter = [[zero if tab is None else tab for tab in row] for row in inter]
    nodes = torch.arange(rows * cols, device=model.device).reshape(rows, cols)
    nodes = nodes if transposed else nodes.T  # nodes[t, p]
    return width, length, transposed, nodes, intra, inter


def _slice_energy(unary: torch.Tensor, intra_row, width: int) -> torch.Tensor:
    """:math:`\\ell_t` as a tensor of shape ``(c,) * w`` from the unaries ``(w, c)`` of the slice."""
    c = unary.shape[1]
    out = torch.zeros((c,) * width, dtype=unary.dtype, device=unary.device)
    for p in range(width):
        out = out + unary[p].reshape((1,) * p + (c,) + (1,) * (width - p - 1))
    for p, tab in enumerate(intra_row):
        if tab is not None:
            out = out + tab.reshape((1,) * p + (c, c) + (1,) * (width - p - 2))
    return out


def _swap(log_a: torch.Tensor, energy: torch.Tensor | None, p: int, tab: torch.Tensor):
    """Replace the label ``a`` at position ``p`` by ``b``: :math:`\\log\\sum_a e^{A(\\ldots a\\ldots) - \\theta[a, b]}`
    (and the expectation-semiring companion ``energy``, if given)."""
    x = log_a.movedim(p, -1).unsqueeze(-1) - tab  # (..., a, b)
    new = torch.logsumexp(x, dim=-2)
    if energy is None:
        return new.movedim(-1, p), None
    w = torch.softmax(x, dim=-2)
    e = (w * (energy.movedim(p, -1).unsqueeze(-1) + tab)).sum(-2)
    return new.movedim(-1, p), e.movedim(-1, p)


def transfer_matrix_feasible(model: PairwiseModel, *, max_column_states: int = MAX_COLUMN_STATES) -> bool:
    """True if :func:`transfer_matrix_inference` accepts ``model`` (grid layout and size limits)."""
    _check_model(model)
    try:
        width, length, *_ = _layout(model)
    except UserInputError:
        return False
    return exact_method(width, length, model.num_labels, max_column_states=max_column_states) == "transfer"


def exact_method(rows: int, cols: int, labels: int, *, max_configurations: int = MAX_CONFIGURATIONS,
                 max_column_states: int = MAX_COLUMN_STATES) -> str | None:
    """The exact method within its limits for a ``rows x cols`` grid model with ``labels`` labels (the choice of
    :func:`exact_inference_auto`): ``"transfer"``, else ``"enumeration"``, else None."""
    width, length = min(rows, cols), max(rows, cols)
    if (width * math.log(labels) <= math.log(max_column_states) + 1e-9
            and 8 * length * labels**width <= MAX_MESSAGE_BYTES):
        return "transfer"
    return "enumeration" if rows * cols * math.log(labels) <= math.log(max_configurations) + 1e-9 else None


def transfer_matrix_inference(model: PairwiseModel, *, max_column_states: int = MAX_COLUMN_STATES,
                              max_message_bytes: int = MAX_MESSAGE_BYTES) -> TransferMatrixResult:
    r"""Exact :math:`\log Z^*`, node marginals, :math:`\langle P^*, E\rangle` and :math:`H(P^*)` of a grid model.

    Parameters
    ----------
    model : PairwiseModel
        With ``grid_shape = (rows, cols)`` and edges between 4-neighbours only.
    max_column_states : int
        Refuse when :math:`c^w` (``w = min(rows, cols)``) is larger; time is :math:`O(L\,w\,c^{w+1})` and peak
        working memory about :math:`3\cdot 8\,c^{w+1}` bytes.
    max_message_bytes : int
        Refuse when the stored backward messages, :math:`8\,L\,c^w` bytes, are larger.

    Computed in float64 (``marginals`` in the model's dtype).  Raises ``UserInputError`` for a model without grid
    layout, an edge between non-neighbours, or a size above the limits.
    """
    t0 = time.perf_counter()
    _check_model(model)
    max_column_states = check_int("max_column_states", max_column_states, minimum=2)
    max_message_bytes = check_int("max_message_bytes", max_message_bytes, minimum=1)
    width, length, transposed, nodes, intra, inter = _layout(model)
    n, c = model.num_nodes, model.num_labels
    if width * math.log(c) > math.log(max_column_states) + 1e-9:
        raise UserInputError(f"transfer matrix needs c**width = {c}**{width} column states (grid {model.grid_shape}), "
                             f"above the limit max_column_states = {max_column_states}")
    states = c**width
    if 8 * length * states > max_message_bytes:
        raise UserInputError(f"transfer matrix needs 8 * length * c**width = {8 * length * states} bytes of messages "
                             f"(grid {model.grid_shape}), above the limit max_message_bytes = {max_message_bytes}")
    unary = model.unary.to(torch.float64)
    local = [_slice_energy(unary[nodes[t]], intra[t], width) for t in range(length)]

    beta = [None] * length
    beta[-1] = torch.zeros_like(local[-1])
    for t in range(length - 2, -1, -1):
        g = beta[t + 1] - local[t + 1]
        for p in range(width):
            g, _ = _swap(g, None, p, inter[t][p].T)
        beta[t] = g

    marg = torch.zeros(n, c, dtype=torch.float64, device=model.device)
    alpha, energy = -local[0], local[0].clone()
    log_z = torch.logsumexp((alpha + beta[0]).reshape(-1), 0)
    for t in range(length):
        if t > 0:
            for p in range(width):
                alpha, energy = _swap(alpha, energy, p, inter[t - 1][p])
            alpha, energy = alpha - local[t], energy + local[t]
        prob = torch.exp(alpha + beta[t] - log_z)
        for p in range(width):
            other = tuple(q for q in range(width) if q != p)
            marg[nodes[t, p]] = prob.sum(other) if other else prob
    mean_e = (torch.softmax(alpha.reshape(-1), 0) * energy.reshape(-1)).sum()
    log_z_forward = torch.logsumexp(alpha.reshape(-1), 0)
    if not torch.isclose(log_z, log_z_forward, rtol=1e-9, atol=1e-9):  # pragma: no cover - a bug, not bad input
        raise RuntimeError(f"forward and backward log Z disagree: {float(log_z_forward)} vs {float(log_z)}")
    return TransferMatrixResult(log_z=float(log_z_forward), marginals=marg.to(model.dtype),
                                entropy=float(log_z_forward + mean_e), expected_energy=float(mean_e),
                                num_configurations=c**n, seconds=time.perf_counter() - t0, width=width,
                                length=length, column_states=states, transposed=transposed)


def exact_inference_auto(model: PairwiseModel, *, method: str = "auto",
                         max_configurations: int = MAX_CONFIGURATIONS,
                         max_column_states: int = MAX_COLUMN_STATES) -> ExactResult:
    r"""Exact inference by the cheaper exact method.

    ``method="auto"`` uses :func:`transfer_matrix_inference` when the model is a grid within its limits
    (cost :math:`O(L\,w\,c^{w+1})`, below enumeration's :math:`O(c^n)`), otherwise
    :func:`~flowlearn.pgm.enumeration.exact_inference` (:math:`c^n \le` ``max_configurations``).
    ``"transfer"`` and ``"enumeration"`` force one.  Raises ``UserInputError`` if neither method applies.
    """
    _check_model(model)
    check_choice("method", method, ("auto", "transfer", "enumeration"))
    auto_transfer = method == "auto" and transfer_matrix_feasible(model, max_column_states=max_column_states)
    if method == "transfer" or auto_transfer:
        return transfer_matrix_inference(model, max_column_states=max_column_states)
    n, c = model.num_nodes, model.num_labels
    if method == "enumeration" or n * math.log(c) <= math.log(max_configurations) + 1e-9:
        return exact_inference(model, max_configurations=max_configurations)
    raise UserInputError(f"model {model!r} is too large for exact inference: c**n = {c}**{n} is above "
                         f"max_configurations = {max_configurations} and the transfer matrix needs a grid model "
                         f"with c**min(rows, cols) <= max_column_states = {max_column_states}")
