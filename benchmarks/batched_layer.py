"""Batched linearized flow layers and the segmentation head: speed and memory (issue 19).

Each case runs in a fresh subprocess (so peak memory is its own) at 1 and 2 threads:

* ``batch``: three stacked ``LinearizedAssignmentLayer`` s (J = 2, 3x3 stencil, random patches and distances
  that require grad), forward + backward, batched ``(N, J, 256, 256)`` against a loop over the N images
  (N = 1, 4, 8, 16): time, peak memory, the ratio loop / batched and the memory per image;
* ``unet``: one training step (forward, ``nll_loss``, backward, Adam) of MONAI's ``BasicUNet`` (default
  features) at ``(8, 1, 256, 256)`` with and without ``AssignmentFlowHead(32, 2, layers=3)``;
* ``stack``: a ``(1, 1, D, 256, 256)`` float32 stack through the 3-layer 3-D head, forward and backward, with
  the 6-neighbourhood (D = 8, 16, 32) and the 26-neighbourhood (D = 4, 8, 16) (growth in voxels), and the
  6-neighbourhood head with ``checkpoint=True`` and ``LowRank(recompute_forward=True)`` ("lean"); at the
  largest thread count only.

Usage::

    python -m benchmarks.batched_layer [--quick] [--threads 1 2] [--device cpu] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _case(kind: str, n: int, size: int, threads: int, device: str, mode: str) -> dict:
    import torch

    from benchmarks._memory import environment, measure, resolve_device
    from flowlearn import AssignmentFlowHead, LinearizedAssignmentLayer
    from flowlearn.linearized import LowRank

    torch.set_num_threads(threads)
    dev = resolve_device(device)
    g = torch.Generator().manual_seed(0)
    out: dict = {"kind": kind, "n": n, "size": size, "threads": threads, "mode": mode}
    if kind == "batch":
        layers = [LinearizedAssignmentLayer(rho=1.0, T=1.0) for _ in range(3)]
        p = torch.softmax(torch.randn(n, 3, 9, size, size, generator=g), 2).to(dev).requires_grad_(True)
        D = torch.rand(n, 2, size, size, generator=g).to(dev).requires_grad_(True)

        def run(pp, DD):
            logw = None
            for k, layer in enumerate(layers):
                logw = layer(pp[:, k], DD, logw)
            logw.sum().backward()

        run(p[:1], D[:1])                                       # warm-up: stencil and CSR pattern cached
        with measure(dev) as m:
            if mode == "batched":
                run(p, D)
            else:
                for i in range(n):
                    run(p[i:i + 1], D[i:i + 1])
    elif kind == "unet":
        from monai.networks.nets import BasicUNet

        torch.manual_seed(0)
        net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=32 if mode == "head" else 2)
        model = torch.nn.Sequential(net, AssignmentFlowHead(32, 2, layers=3)) if mode == "head" else net
        model = model.to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.rand(n, 1, size, size, generator=g).to(dev)
        y = (x[:, 0] > 0.5).long()
        loss_fn = (torch.nn.functional.nll_loss if mode == "head"
                   else torch.nn.functional.cross_entropy)

        def step():
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()

        step()
        with measure(dev) as m:
            step()
        out["parameters"] = sum(q.numel() for q in model.parameters())
    else:  # stack; mode "head3d-6", "head3d-26", "head3d-6-lean" (checkpointed predictors, recomputed basis)
        lean = mode.endswith("-lean")
        head = AssignmentFlowHead(1, 2, layers=3, spatial_dims=3, neighbourhood=int(mode.split("-")[1]),
                                  checkpoint=lean, method=LowRank(recompute_forward=True) if lean else None).to(dev)
        x = torch.rand(1, 1, n, size, size, generator=g).to(dev)
        y = (x[:, 0] > 0.5).long()
        with measure(dev) as m:
            torch.nn.functional.nll_loss(head(x), y).backward()
    out.update(seconds=m["seconds"], peak_mb=m["peak_mb"], memory_kind=m["memory_kind"], env=environment(dev))
    return out


def _spawn(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.batched_layer", "--case", *args],
                          capture_output=True, text=True, cwd=HERE.parent)
    if proc.returncode != 0:
        return {"case": args, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--out", default=str(HERE / "results" / "batched_layer.json"))
    ap.add_argument("--no-stack", action="store_true", help="skip the 3-D stacks")
    ap.add_argument("--case", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        kind, n, size, threads, device, mode = args.case
        print(json.dumps(_case(kind, int(n), int(size), int(threads), device, mode)))
        return 0
    size, ns = (64, [1, 4, 8]) if args.quick else (256, [1, 4, 8, 16])
    stacks = ({"6": [4, 8], "26": [4], "6-lean": [4, 8]} if args.quick
              else {"6": [8, 16, 32], "26": [4, 8, 16], "6-lean": [8, 16, 32]})
    rows = []
    for t in args.threads:
        for n in ns:
            for mode in ("batched", "loop"):
                rows.append(_spawn(["batch", str(n), str(size), str(t), args.device, mode]))
                print(json.dumps(rows[-1]), flush=True)
        for mode in ("plain", "head"):
            rows.append(_spawn(["unet", "8" if not args.quick else "2", str(size), str(t), args.device, mode]))
            print(json.dumps(rows[-1]), flush=True)
        if t != max(args.threads) or args.no_stack:
            continue
        for nb, depths in stacks.items():
            for d in depths:
                rows.append(_spawn(["stack", str(d), str(size), str(t), args.device, f"head3d-{nb}"]))
                print(json.dumps(rows[-1]), flush=True)
    summary = []
    for t in args.threads:
        get = lambda **kw: next((r for r in rows if all(r.get(k) == v for k, v in kw.items())), None)
        for n in ns:
            b, lp = get(kind="batch", n=n, threads=t, mode="batched"), get(kind="batch", n=n, threads=t, mode="loop")
            if b and lp and "error" not in b and "error" not in lp:
                summary.append(f"threads {t}  N={n:2d}  batched {b['seconds']:.2f} s {b['peak_mb']:.0f} MB "
                               f"({b['peak_mb'] / n:.0f} MB/image)  loop {lp['seconds']:.2f} s {lp['peak_mb']:.0f} MB"
                               f"  loop/batched {lp['seconds'] / b['seconds']:.2f}")
        u, h = get(kind="unet", threads=t, mode="plain"), get(kind="unet", threads=t, mode="head")
        if u and h and "error" not in u and "error" not in h:
            summary.append(f"threads {t}  BasicUNet step {u['seconds']:.2f} s {u['peak_mb']:.0f} MB; with head "
                           f"{h['seconds']:.2f} s {h['peak_mb']:.0f} MB: +{100 * (h['seconds'] / u['seconds'] - 1):.0f} %"
                           f" time")
        for nb, depths in stacks.items():
            for d in depths:
                s = get(kind="stack", n=d, threads=t, mode=f"head3d-{nb}")
                if s and "error" not in s:
                    summary.append(f"threads {t}  3-D head, {nb} neighbours, (1,1,{d},{size},{size}) fwd+bwd "
                                   f"{s['seconds']:.2f} s {s['peak_mb']:.0f} MB")
    print("\n".join(summary))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
