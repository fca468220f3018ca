r"""Parameter predictor of paper 000, Sect. 4.4: weight patches from local features of unseen images.

With features :math:`f_i` (raw window around pixel :math:`i`), :math:`N` prototype patches :math:`p_j`, tangent
vectors :math:`\nu_j\in T_0` and a scale :math:`\sigma`,

.. math:: s_{ij} = e^{-\sigma\|f_i - p_j\|}\quad(4.3),\qquad
          \widehat\Omega_i = \exp_{\mathbb 1}\Big(\sum_j \frac{s_{ij}}{\sum_k s_{ik}}\,\nu_j\Big)\quad(4.4).

:class:`PredictorTrainer` backpropagates the loss through the linearized flow into (4.4) and updates
:math:`(\nu, p, \sigma)` with Adam.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .._checks import UserInputError, check_int, check_positive
from ..data.features import window_features
from ..engine import CheckpointPolicy, RunResult, TrainState, run_identity, run_steps
from ..engine.checkpoint import fingerprint
from ..engine.distributed import all_reduce_gradients, all_reduce_sum, world
from ..engine.identity import record_hparams
from ..geometry import proj_tangent
from ..linearized import LowRank, linearized_flow
from ..linearized.methods import check_method
from .losses import LearningProblem
from .training import label_error_percent, problem_fingerprint

__all__ = ["PatchPredictor", "PredictionSample", "PredictorResult", "PredictorTrainer", "clean_windows", "make_sample",
           "predict_tangent"]


@dataclass
class PredictionSample:
    """One image for the predictor: its learning problem and features ``(I, F)``."""

    problem: LearningProblem
    features: torch.Tensor


def make_sample(image, labels, prototypes, *, rho: float = 0.1, T: float = 5.0, feature_size: int = 3,
                dtype=None) -> PredictionSample:
    """Problem (pixel distances, 3x3 uniform patches) and raw-window features of an image ``(H, W, C)``."""
    problem = LearningProblem.from_image(image, labels, prototypes, rho=rho, T=T, dtype=dtype)
    img = torch.as_tensor(np.asarray(image), dtype=problem.weights.dtype)
    feats = window_features(img, feature_size).reshape(problem.weights.num_nodes, -1)
    return PredictionSample(problem=problem, features=feats)


def clean_windows(clean_image, labels, size: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise-free windows ``(H*W, size*size*C)`` and the labels of their pixels ``(H*W, size*size)``
    (replicate padding), the input of :meth:`PatchPredictor.initialize`."""
    img = torch.as_tensor(np.asarray(clean_image, dtype=np.float64))
    lab = torch.as_tensor(np.asarray(labels, dtype=np.float64))[..., None]
    feats = window_features(img, size).reshape(-1, size * size * img.shape[-1])
    return feats, window_features(lab, size).reshape(-1, size * size).round().long()


def predict_tangent(problem: LearningProblem, patches: torch.Tensor, m: int = 10) -> torch.Tensor:
    """:math:`V_T` of the linearized flow with ``patches`` (Krylov, dimension ``m``; no gradient)."""
    with torch.no_grad():
        p = patches.to(problem.weights.dtype)
        return linearized_flow(p, problem.scaled_distances, problem.weights, rho=1.0, T=problem.T,
                               method=LowRank(m=m), check_inputs=False)


class PatchPredictor(torch.nn.Module):
    r"""Weight-patch predictor (4.3)--(4.4).

    Parameters
    ----------
    num_prototypes : int
        Number of prototype patches :math:`N` (50 in the paper).
    feature_dim : int
        Dimension of the features (``9 C`` for a raw 3x3 window of a ``C``-channel image).
    patch_size : int
        Number of weights per patch (9 for 3x3).
    sigma : float
        Initial scale sigma of the similarities (4.3).
    """

    def __init__(self, num_prototypes: int = 50, feature_dim: int = 9, patch_size: int = 9, sigma: float = 1.0,
                 *, dtype=None):
        super().__init__()
        record_hparams(self, locals())
        self.num_prototypes = check_int("num_prototypes", num_prototypes, minimum=1)
        self.feature_dim = check_int("feature_dim", feature_dim, minimum=1)
        self.patch_size = check_int("patch_size", patch_size, minimum=2)
        dtype = dtype or torch.get_default_dtype()
        self.prototypes = torch.nn.Parameter(torch.zeros(self.num_prototypes, self.feature_dim, dtype=dtype))
        self.nu = torch.nn.Parameter(torch.zeros(self.num_prototypes, self.patch_size, dtype=dtype))
        self.sigma = torch.nn.Parameter(torch.tensor(check_positive("sigma", sigma), dtype=dtype))

    def initialize(self, clean_features: torch.Tensor, window_labels: torch.Tensor, *, kappa: float = 1.0,
                   seed: int = 0, max_samples: int = 20000) -> PatchPredictor:
        r"""Initialise: :math:`p_j` the k-means centres of noise-free windows ``clean_features`` ``(M, F)``,
        :math:`\nu_j = \kappa\,\Pi_0[\ell_n = \ell_\text{centre}]_n` from ``window_labels`` ``(M, patch_size)`` (the
        majority label per window position in the cluster)."""
        from sklearn.cluster import KMeans

        X = clean_features.detach().cpu().double().numpy()
        L = window_labels.detach().cpu().numpy()
        rng = np.random.default_rng(seed)
        if X.shape[0] > max_samples:
            keep = rng.choice(X.shape[0], max_samples, replace=False)
            X, L = X[keep], L[keep]
        distinct = np.unique(X, axis=0).shape[0]
        k = min(self.num_prototypes, distinct)
        km = KMeans(n_clusters=k, n_init=2, random_state=seed).fit(X)
        centres = np.asarray(km.cluster_centers_)
        if k < self.num_prototypes:  # fewer distinct windows than prototypes: repeat centres
            centres = centres[np.arange(self.num_prototypes) % k]
        nu = np.zeros((self.num_prototypes, self.patch_size))
        for j in range(self.num_prototypes):
            members = L[km.labels_ == (j % k)]
            modes = np.array([np.bincount(members[:, n]).argmax() for n in range(self.patch_size)])
            nu[j] = kappa * (modes == modes[self.patch_size // 2])
        with torch.no_grad():
            self.prototypes.copy_(torch.as_tensor(centres, dtype=self.prototypes.dtype))
            self.nu.copy_(proj_tangent(torch.as_tensor(nu, dtype=self.nu.dtype)))
        return self

    def extra_repr(self) -> str:
        return f"num_prototypes={self.num_prototypes}, feature_dim={self.feature_dim}, patch_size={self.patch_size}"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Patches ``(I, patch_size)`` for features ``(I, F)`` -- eq. (4.4)."""
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise UserInputError(f"features must have shape (I, {self.feature_dim}), got {tuple(features.shape)}")
        dist = torch.cdist(features.to(self.prototypes.dtype), self.prototypes)
        a = torch.softmax(-self.sigma * dist, dim=1)          # s_ij / sum_k s_ik
        return torch.softmax(a @ proj_tangent(self.nu), dim=1)  # exp_1(v) = softmax(v)


@dataclass(kw_only=True)
class PredictorResult(RunResult):
    """The engine's ``status``, ``history`` (per iteration: train loss, train/validation label error %,
    sigma, seconds) and ``stats``, plus the final errors per image (``final``)."""

    final: dict = field(default_factory=dict)


class PredictorTrainer:
    """End-to-end training of a :class:`PatchPredictor` through the closed-form gradient (Sect. 4.4).

    Under ``torchrun`` rank ``r`` takes the training images ``r, r + world, ...`` and the gradients are summed.

    Parameters
    ----------
    method : LowRank, Exact, DenseAutograd, AutodiffEuler or AutodiffExpint
        How :math:`V_T` and its gradient with respect to the predicted patches are computed.
    lr : float
        Adam step size.
    iters : int
        Training iterations.
    checkpoint_every, checkpoint_seconds : int, float
        Checkpoint after this many iterations or seconds, whichever comes first.
    show_progress : bool
        Show a progress bar.
    """

    def __init__(self, method=LowRank(), lr: float = 0.05, iters: int = 50, checkpoint_every: int = 10,
                 checkpoint_seconds: float = 30.0, show_progress: bool = True):
        self.method = check_method(method)
        self.lr = check_positive("lr", lr)
        self.iters = check_int("iters", iters, minimum=0)
        self.checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
        self.checkpoint_seconds = check_positive("checkpoint_seconds", checkpoint_seconds, strict=False)
        self.show_progress = bool(show_progress)

    def _backward(self, patches: torch.Tensor, problem: LearningProblem, n: int) -> tuple[float, torch.Tensor]:
        """Backpropagate ``L(patches) / n`` into the predictor through the linearized-flow layer;
        ``(data loss, V_T)``."""
        p = patches.to(problem.weights.dtype)
        V = linearized_flow(p, problem.scaled_distances, problem.weights, rho=1.0, T=problem.T, method=self.method,
                            check_inputs=False)
        data_loss = problem.data_loss(V)
        loss = data_loss + problem.regularizer(p) if problem.tau > 0 else data_loss
        (loss / n).backward()
        return float(data_loss.detach()), V.detach()

    @staticmethod
    def evaluate(predictor: PatchPredictor, samples) -> list:
        """Label error (percent) of the predicted weights on each sample."""
        with torch.no_grad():
            return [label_error_percent(predict_tangent(s.problem, predictor(s.features)), s.problem.labels)
                    for s in samples]

    def identity(self, predictor: PatchPredictor, train, validation=()) -> dict:
        """Config and input fingerprint that a resumed checkpoint must match."""
        inputs = [(problem_fingerprint(s.problem), fingerprint(s.features)) for s in list(train) + list(validation)]
        return run_identity("PredictorTrainer", method=self.method, config={"lr": self.lr}, predictor=predictor,
                            inputs=(inputs, len(train), predictor.state_dict()))

    def fit(self, predictor: PatchPredictor, train: list, validation: list = (), *, checkpoint=None,
            resume: bool = False, overwrite: bool = False, stop_after: int | None = None,
            callback=None) -> PredictorResult:
        """Train on the samples ``train``; record validation errors on ``validation`` every iteration."""
        if not train:
            raise UserInputError("train must hold at least one PredictionSample")
        opt = torch.optim.Adam(predictor.parameters(), lr=self.lr)
        world_size, rank = world()
        mine = list(train)[rank::world_size]

        def step(it: int) -> dict:
            opt.zero_grad()
            sums = torch.zeros(2, dtype=torch.float64)
            for s in mine:
                data_loss, tangent = self._backward(predictor(s.features), s.problem, len(train))
                sums += torch.tensor([data_loss, label_error_percent(tangent, s.problem.labels)],
                                     dtype=torch.float64)
            all_reduce_gradients(predictor.parameters())
            sums = all_reduce_sum(sums)
            opt.step()
            with torch.no_grad():
                predictor.sigma.clamp_(min=1e-3)
            return {"loss": float(sums[0]) / len(train), "label_error": float(sums[1]) / len(train),
                    "validation_error": float(np.mean(self.evaluate(predictor, validation))) if validation else None,
                    "sigma": float(predictor.sigma.detach())}

        run = run_steps(step, iterations=self.iters, state=TrainState(predictor=predictor, optimizer=opt),
                        identity=self.identity(predictor, train, validation),
                        checkpoint=CheckpointPolicy(checkpoint, self.checkpoint_every, self.checkpoint_seconds,
                                                    resume, overwrite),
                        desc="predictor", show_progress=None if self.show_progress else False,
                        postfix=("loss", "label_error"), stop_after=stop_after, callback=callback)
        final = {"train_errors": self.evaluate(predictor, train),
                 "validation_errors": self.evaluate(predictor, validation) if validation else []}
        return PredictorResult(final=final, status=run.status, history=run.history, stats=run.stats)
