"""Gradient flow encoding (paper 002): train a decoder-only autoencoder on scikit-learn's digits,
whose codes are found by the AMD adaptive gradient-flow solver, and compare the validation
cross-entropy with a conventional autoencoder trained on the same images.
"""

import torch
from _common import example_args, out_dir

from flowlearn.encoding import TrainConfig, Trainer, load_dataset
from flowlearn.encoding.plots import reconstructions_for, save_reconstruction_grid
from flowlearn.io import save_json

args = example_args(__doc__.splitlines()[0])
out = out_dir(args, "encode_digits")
size, images = (100, 1200) if args.small else (100, 6000)
torch.set_num_threads(1)

data = load_dataset("digits")                              # 1437 training / 360 validation images, 8x8
idx = torch.arange(size)
results = {}
for model in ("gfe", "ae"):
    cfg = TrainConfig(model=model, solver="amd", optimizer="rmsprop", lr=2e-3, epochs=-(-images // size),
                      eval_every=10**6, seed=0)
    results[model] = Trainer(cfg).fit(data, idx, out_dir=out / model)   # checkpoints there, resumes
enc = results["gfe"].module.encode(data.val[:4])         # codes + per-sample steps/evaluations/status
save_reconstruction_grid(out / "reconstructions.png",
                         reconstructions_for({k: r.module for k, r in results.items()}, data.val[:12]),
                         data.image_shape)
save_json(out / "metrics.json", {k: r.val_bce for k, r in results.items()}
          | {"amd_steps": enc.steps.tolist(), "amd_decoder_evals": enc.decoder_evals.tolist()})
print(f"validation BCE with {size} training images: GFE-amd {results['gfe'].val_bce:.4f}, "
      f"AE {results['ae'].val_bce:.4f}")
