"""Learn the weight patches of a linearized assignment flow with the low-rank closed-form gradient
(paper 000, Sect. 3) and compare the label error with uniform weights on the training image and on
an unseen image labelled with the parameter predictor (Sect. 4.4).
"""

import torch
from _common import example_args, out_dir

from flowlearn.data import make_voronoi
from flowlearn.io import save_json
from flowlearn import LearningProblem, LowRank, WeightLearner
from flowlearn.learning.plots import plot_curves

args = example_args(__doc__.splitlines()[0])
out = out_dir(args, "learn_weights")
size, iters = (24, 8) if args.small else (128, 60)

v = make_voronoi(size, scenario="boundary", seed=0)
problem = LearningProblem.from_image(v.image, v.labels, v.prototypes, rho=0.1, T=5.0)
learner = WeightLearner(LowRank(m=10, rank=1), optimizer="adam", lr=0.05, iters=iters, show_progress=False)
uniform = learner.evaluate(problem, problem.weights.patches)
result = learner.fit(problem, checkpoint=out / "checkpoint.pt", resume=True)   # continues an earlier run
plot_curves(out / "curves.png", {"lowrank": result.history})
summary = {"size": size, "iters": iters, "uniform": uniform, "learned": result.final}
save_json(out / "metrics.json", summary)
torch.save(result.patches, out / "patches.pt")
print(f"label error: uniform {uniform['label_error']:.2f} %, learned {result.final['label_error']:.2f} %; "
      f"loss {uniform['loss']:.4f} -> {result.final['loss']:.4f}")
