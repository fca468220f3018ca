"""The MADE peer of the time-to-accuracy benchmark: autoregressive masks, normalisation, reverse-KL training."""

import torch

from benchmarks.made import MADE, MadeConfig, train_made
from flowlearn.pgm import exact_inference, potts_grid
from flowlearn.pgm.enumeration import configurations


def _model(rows=2, cols=3, c=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return potts_grid(0.8 * torch.randn(rows, cols, c, generator=gen, dtype=torch.float64), 1.0)


def test_autoregressive_jacobian():
    n, c = 5, 3
    made = MADE(n, c, hidden=12, seed=1, dtype=torch.float64)
    with torch.no_grad():  # nonzero biases so that every unit is active somewhere
        made.b1.normal_(generator=torch.Generator().manual_seed(2))
    x = torch.rand(1, n * c, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: made.logits(v)[0], x)[:, :, 0, :]  # (n, c, n*c)
    dep = jac.abs().reshape(n, c, n, c).sum((1, 3))                                      # [out node, in node]
    assert torch.all(dep[torch.triu(torch.ones(n, n, dtype=torch.bool))] == 0)
    assert torch.all(dep[torch.tril(torch.ones(n, n, dtype=torch.bool), -1)] > 0)


def test_log_prob_normalised_and_sampling_consistent():
    n, c = 4, 3
    made = MADE(n, c, hidden=8, seed=3, dtype=torch.float64)
    with torch.no_grad():
        for p in made.parameters():
            p.normal_(generator=torch.Generator().manual_seed(4))
    x = configurations(n, c)
    with torch.no_grad():
        logq = made.log_prob(x)
    assert abs(float(torch.logsumexp(logq, 0))) < 1e-10
    samples = made.sample(20000, torch.Generator().manual_seed(5))
    freq = torch.bincount((samples * c ** torch.arange(n - 1, -1, -1)).sum(1), minlength=c**n).double() / 20000
    assert float((freq - logq.exp()).abs().sum()) < 0.1


def test_training_lowers_kl():
    model = _model()
    exact = exact_inference(model)
    x = configurations(model.num_nodes, model.num_labels)
    logp = -model.energy(x) - exact.log_z
    made = MADE(model.num_nodes, 2, seed=0, dtype=torch.float64)

    def kl():
        with torch.no_grad():
            logq = made.log_prob(x)
            return float((logq.exp() * (logq - logp)).sum())

    before = kl()
    train_made(made, model, MadeConfig(iterations=150, batch_size=128, lr=1e-2, anneal=0.0))
    after = kl()
    assert after < 0.5 * before and after < 0.05
