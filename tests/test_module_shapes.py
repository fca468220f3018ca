"""The S-flow and the GFE encoder inside a user's own module: channels-first image batches of any size in, the
documented shapes out, gradients to the user's parameters."""

import torch
from torch import nn

from flowlearn import GradientFlowEncoder, RandomizedAssignmentFlow


class Decoder(nn.Module):
    def __init__(self, latent=3, side=6):
        super().__init__()
        self.net, self.side = nn.Sequential(nn.Linear(latent, 36), nn.Sigmoid()), side

    def forward(self, z):                       # (B, latent) -> (B, 1, side, side)
        return self.net(z).view(-1, 1, self.side, self.side)


class UserModel(nn.Module):
    """A user's model: codes of channels-first images by gradient flow, then a linear head."""

    def __init__(self):
        super().__init__()
        self.decoder = Decoder()
        self.gfe = GradientFlowEncoder(self.decoder, 3, adjoint="full")   # dz*/dtheta reaches the decoder
        self.head = nn.Linear(3, 2)

    def forward(self, images):                   # (N, 1, 6, 6) -> (N, 2)
        return self.head(self.gfe(images))


def test_gfe_encoder_in_a_user_module_takes_any_batch_size():
    torch.manual_seed(0)
    model = UserModel()
    for n in (1, 3, 7):
        x = torch.rand(n, 1, 6, 6)
        out = model(x)
        assert out.shape == (n, 2)
        model.zero_grad()
        out.sum().backward()
        assert model.head.weight.grad is not None
        assert model.decoder.net[0].weight.grad is not None          # the adjoint reaches the decoder
    # a sample's code does not depend on the rest of its batch
    x = torch.rand(5, 1, 6, 6)
    with torch.no_grad():
        assert torch.allclose(model.gfe(x)[2:3], model.gfe(x[2:3]), atol=1e-5)


def test_sflow_in_a_user_module_samples_any_batch_size():
    """``flow(num_samples)`` returns log S(T) (num_samples, n, c); a user turns it channels-first on the grid."""
    torch.manual_seed(0)
    H, W, c = 3, 4, 2
    flow = RandomizedAssignmentFlow(H * W, c, dtype=torch.float64)

    class Sampler(nn.Module):
        def __init__(self):
            super().__init__()
            self.flow = flow

        def forward(self, n):                                     # -> (n, c, H, W) probabilities
            return self.flow(n).exp().transpose(1, 2).reshape(n, c, H, W)

    sampler = Sampler()
    for n in (1, 5):
        s = sampler(n)
        assert s.shape == (n, c, H, W) and s.dtype == torch.float64
        assert torch.allclose(s.sum(1), torch.ones(n, H, W, dtype=torch.float64))
        flow.zero_grad()
        s[:, 0].sum().backward()
        assert all(p.grad is not None for p in flow.parameters() if p.requires_grad)
