"""Train a randomized assignment flow on the Ising model of paper 001 (Table 1), draw integer
samples and marginals, and compare its KL divergence to the Gibbs distribution with mean field.
"""

import torch
from _common import example_args, out_dir

from flowlearn.io import save_json
from flowlearn.pgm import MeanField, exact_inference, ising_grid
from flowlearn.randomized import RandomizedAssignmentFlow, TrainingConfig, evaluate_flow, train_randomized_flow
from flowlearn.randomized.inference import evaluate_factorized

args = example_args(__doc__.splitlines()[0])
out = out_dir(args, "ising_sampling")
iters, evals = (500, 20_000) if args.small else (3000, 1_000_000)
torch.set_num_threads(1)                                 # small tensors: one thread is fastest

model = ising_grid(3, 8, field=3.0, coupling=2.1)
exact = exact_inference(model)                           # enumeration of all 2**24 configurations
flow = RandomizedAssignmentFlow(model.num_nodes, model.num_labels, init_rank=2, init_noise=0.5,
                                initial_logits=-0.5 * model.unary, dtype=torch.float32)
cfg = TrainingConfig(iterations=iters, batch_size=256, lr=1e-2, lr_schedule="cosine",
                     entropy_estimator="score", random_roundings=4, seed=0)
train_randomized_flow(flow, model, cfg, log_z=exact.log_z, checkpoint_path=out / "checkpoint.pt",
                      resume=True, show_progress=False)                  # continues an earlier run


def row(e):
    return {k: getattr(e, k) for k in ("kl", "energy", "entropy", "marginal_difference")}


g = torch.Generator().manual_seed(1)
samples = flow.sample(8, g)                              # (8, 24) integer labelings
af = evaluate_flow(flow, model, exact, num_samples=evals)
mf = evaluate_factorized(model, MeanField(50, iterations=300, seed=0).fit(model).marginals, exact)
save_json(out / "metrics.json", {"iterations": iters, "randomized_af": row(af), "mean_field": row(mf),
                                 "samples": samples.tolist()})
print(f"KL to the Gibbs distribution: randomized AF {af.kl:.3f}, mean field {mf.kl:.3f}")
