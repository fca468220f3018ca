"""Label a noisy Voronoi image with the full and the linearized assignment flow (paper 000, Sect. 2).

Writes the labelings as PNGs and ``metrics.json`` with the label error of pixel-wise rounding and
of both flows; the flows must beat rounding.
"""

import time

import torch
from _common import example_args, out_dir

from flowlearn.data import colorize_labels, make_voronoi, nearest_prototype_labels
from flowlearn.data.images import to_display
from flowlearn.evaluation import label_error
from flowlearn.graphs import GridWeights
from flowlearn.io import save_json, save_png
from flowlearn.labeling import AssignmentFlow, LinearizedAssignmentFlow, distance_matrix
from flowlearn.solvers import RK4, ExponentialIntegrator

args = example_args(__doc__.splitlines()[0])
out = out_dir(args, "label_image")
size = 48 if args.small else 256

v = make_voronoi(size, scenario="colors", seed=1)
D = distance_matrix(torch.from_numpy(v.image), v.prototypes)          # (I, J) squared distances
omega = GridWeights(size, size, size=3)                                # uniform 3x3 patches
metrics = {"size": size, "rounding": label_error(nearest_prototype_labels(v.image, v.prototypes), v.labels)}
for name, flow in [("full_rk4", AssignmentFlow(omega, rho=1.0, step_size=0.5, solver=RK4())),
                   ("linearized_krylov", LinearizedAssignmentFlow(omega, rho=1.0, T=20.0,
                                                                  integrator=ExponentialIntegrator(m=10)))]:
    t0 = time.perf_counter()
    res = flow.run(D)
    labels = res.label_image(size, size).numpy()
    metrics[name] = {"label_error_percent": label_error(labels, v.labels), "status": str(res.status),
                     "seconds": time.perf_counter() - t0}
    save_png(out / f"{name}.png", colorize_labels(labels))
save_png(out / "image.png", to_display(v.image))
save_json(out / "metrics.json", metrics)
print({k: (v if not isinstance(v, dict) else round(v["label_error_percent"], 2)) for k, v in metrics.items()})
