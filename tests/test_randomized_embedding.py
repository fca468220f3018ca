"""Embedding identities of paper 001 (Def. 1, Lemma 1) and the mean-field KL formula."""

import pytest
import torch

from flowlearn.geometry import lift
from flowlearn.pgm import exact_inference
from flowlearn.pgm.enumeration import kl_from_table
from flowlearn.pgm.mean_field import mean_field_free_energy
from flowlearn.randomized.objective import embed_factorized, embed_tangent, marginalize

from test_pgm_enum import random_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("n,c", [(1, 3), (3, 2), (4, 3)])
def test_lifting_map_lemma(n, c):
    g = torch.Generator().manual_seed(n * c)
    s = torch.softmax(torch.randn(n, c, generator=g), -1)
    v = torch.randn(n, c, generator=g)
    left = embed_factorized(lift(s, v))            # T(exp_S(V))
    right = lift(embed_factorized(s), embed_tangent(v))  # exp_{T(S)}(QV)
    torch.testing.assert_close(left, right, atol=1e-14, rtol=1e-12)


@pytest.mark.parametrize("n,c", [(2, 2), (3, 3), (5, 2)])
def test_marginalization_inverts_embedding(n, c):
    s = torch.softmax(torch.randn(2, n, c), -1)
    p = embed_factorized(s)
    torch.testing.assert_close(p.sum(-1), torch.ones(2))
    torch.testing.assert_close(marginalize(p, n, c), s)  # Q^T T(S) = S


def test_q_is_adjoint_of_marginalization():
    n, c = 3, 3
    v = torch.randn(n, c)
    p = torch.randn(c**n)
    assert float(embed_tangent(v) @ p) == pytest.approx(float((v * marginalize(p, n, c)).sum()), abs=1e-12)


def test_mean_field_kl_formula_equals_enumeration():
    m = random_model(n=6, c=2, num_edges=8, seed=4)
    log_z = exact_inference(m).log_z
    for seed in range(3):
        q = torch.softmax(torch.randn(6, 2, generator=torch.Generator().manual_seed(seed)), -1)
        # eq. (16)-(17): KL[T(q):P*] = <q, log q> + <T(q), E> + log Z*
        formula = float(mean_field_free_energy(m, q)) + log_z
        assert formula == pytest.approx(kl_from_table(m, embed_factorized(q)), abs=1e-11)


def test_embedding_size_guard():
    with pytest.raises(ValueError, match="dense embedding"):
        embed_factorized(torch.full((30, 2), 0.5))
    with pytest.raises(ValueError, match="last dimension"):
        marginalize(torch.ones(5), 2, 2)
