"""Bad inputs to every ``flowlearn`` command: one clear error line, exit code 2, no output written.

The table :data:`CASES` is the single source of truth; ``docs/reliability.md`` is generated from it by
running this file as a script (``.venv/bin/python tests/test_reliability_bad_inputs.py``), which runs
every case and prints the markdown table with the error message each one produced.

Paths in the argument lists are templates: ``{d}`` is a scratch directory holding the fixture files
made by :func:`make_fixtures`, ``{out}`` the output directory that must not appear, and ``{blocked}``
an output path below an existing regular file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import flowlearn.io
from flowlearn.cli import label as label_cli
from flowlearn.cli.main import main

# (command, bad input, argv template, expected message regex)
CASES = [
    # ------------------------------------------------------------------ demo
    ("demo", "--size 0", ["demo", "--size", "0", "--out", "{out}"], r"size"),
    ("demo", "--size 4 (below the minimum 8)", ["demo", "--size", "4", "--out", "{out}"], r"size"),
    ("demo", "--seed -1", ["demo", "--seed", "-1", "--out", "{out}"], r"seed"),
    ("demo", "--out below a regular file", ["demo", "--size", "16", "--out", "{blocked}"], r"--out"),
    # ------------------------------------------------------------------ voronoi
    ("voronoi", "--size 0", ["voronoi", "--size", "0", "--out", "{out}"], r"size"),
    ("voronoi", "--size -5 (not N or HxW)", ["voronoi", "--size", "-5", "--out", "{out}"], r"--size"),
    ("voronoi", "--size 8x0", ["voronoi", "--size", "8x0", "--out", "{out}"], r"size"),
    ("voronoi", "--noise nan", ["voronoi", "--size", "16", "--noise", "nan", "--out", "{out}"], r"noise"),
    ("voronoi", "--noise -1", ["voronoi", "--size", "16", "--noise", "-1", "--out", "{out}"], r"noise"),
    ("voronoi", "--cells 1", ["voronoi", "--size", "16", "--cells", "1", "--out", "{out}"], r"cells"),
    ("voronoi", "--cells larger than the pixels", ["voronoi", "--size", "16", "--cells", "1000", "--out", "{out}"],
     r"cells"),
    ("voronoi", "--seed -1", ["voronoi", "--size", "16", "--seed", "-1", "--out", "{out}"], r"seed"),
    ("voronoi", "unknown --scenario", ["voronoi", "--scenario", "colour", "--out", "{out}"], r"invalid choice"),
    ("voronoi", "--out below a regular file", ["voronoi", "--size", "16", "--out", "{blocked}"], r"out"),
    ("voronoi", "--size 100000 (more memory than the machine has)", ["voronoi", "--size", "100000",
                                                                     "--out", "{out}"], r"memory"),
    ("voronoi", "--noise 1e308", ["voronoi", "--size", "16", "--noise", "1e308", "--out", "{out}"],
     r"noise must be at most"),
    ("voronoi", "--seed 2**40", ["voronoi", "--size", "16", "--seed", str(2**40), "--out", "{out}"], r"seed"),
    # ------------------------------------------------------------------ label
    ("label", "missing image file", ["label", "{d}/nope.png", "--k", "2", "--out", "{out}"], r"does not exist"),
    ("label", "text file named .png", ["label", "{d}/text.png", "--k", "2", "--out", "{out}"], r"not an image"),
    ("label", "text file named .npy", ["label", "{d}/text.npy", "--k", "2", "--out", "{out}"], r"npy"),
    ("label", "image with NaN", ["label", "{d}/nan_image.npy", "--k", "2", "--out", "{out}"], r"finite|NaN"),
    ("label", "image with inf", ["label", "{d}/inf_image.npy", "--k", "2", "--out", "{out}"], r"finite|inf"),
    ("label", "empty image (0 x 8)", ["label", "{d}/empty_image.npy", "--k", "2", "--out", "{out}"],
     r"empty, got shape \(0, 8\)"),
    ("label", "4-D image array", ["label", "{d}/image4d.npy", "--k", "2", "--out", "{out}"], r"shape"),
    ("label", "complex image dtype", ["label", "{d}/complex_image.npy", "--k", "2", "--out", "{out}"], r"real"),
    ("label", "missing prototypes file", ["label", "{d}/image.npy", "--prototypes", "{d}/nope.npy", "--out", "{out}"],
     r"does not exist"),
    ("label", "prototypes with wrong channels",
     ["label", "{d}/image.npy", "--prototypes", "{d}/protos_c1.npy", "--out", "{out}"], r"channels"),
    ("label", "prototypes with NaN", ["label", "{d}/image.npy", "--prototypes", "{d}/protos_nan.npy", "--out", "{out}"],
     r"finite"),
    ("label", "--k 0", ["label", "{d}/image.npy", "--k", "0", "--out", "{out}"], r"\bk\b"),
    ("label", "--k larger than the pixels", ["label", "{d}/image.npy", "--k", "1000", "--out", "{out}"], r"\bk\b"),
    ("label", "--neighbourhood 2 (even)", ["label", "{d}/image.npy", "--k", "2", "--neighbourhood", "2",
                                          "--out", "{out}"], r"neighbourhood"),
    ("label", "--neighbourhood -3", ["label", "{d}/image.npy", "--k", "2", "--neighbourhood", "-3",
                                    "--out", "{out}"], r"neighbourhood"),
    ("label", "--rho 0", ["label", "{d}/image.npy", "--k", "2", "--rho", "0", "--out", "{out}"], r"rho"),
    ("label", "--rho nan", ["label", "{d}/image.npy", "--k", "2", "--rho", "nan", "--out", "{out}"], r"rho"),
    ("label", "--T -1 (linearized)", ["label", "{d}/image.npy", "--k", "2", "--flow", "linearized", "--T", "-1",
                                     "--out", "{out}"], r"\bT\b"),
    ("label", "--step-size 0", ["label", "{d}/image.npy", "--k", "2", "--step-size", "0", "--out", "{out}"],
     r"step_size|step-size"),
    ("label", "unknown --flow", ["label", "{d}/image.npy", "--k", "2", "--flow", "ful", "--out", "{out}"],
     r"invalid choice"),
    ("label", "missing --truth file", ["label", "{d}/image.npy", "--k", "2", "--truth", "{d}/nope.npy",
                                      "--out", "{out}"], r"not found|does not exist"),
    ("label", "--truth text file named .npy", ["label", "{d}/image.npy", "--k", "2", "--truth", "{d}/text.npy",
                                              "--out", "{out}"], r"truth"),
    ("label", "--truth with the wrong shape", ["label", "{d}/image.npy", "--k", "2", "--truth", "{d}/labels_small.npy",
                                              "--out", "{out}"], r"shape"),
    ("label", "--truth with float dtype", ["label", "{d}/image.npy", "--k", "2", "--truth", "{d}/labels_float.npy",
                                          "--out", "{out}"], r"integer"),
    ("label", "--out below a regular file", ["label", "{d}/image.npy", "--k", "2", "--out", "{blocked}"], r"--out"),
    ("label", "uint8 image (0..255) with prototypes in [0, 1]",
     ["label", "{d}/image_uint8.npy", "--prototypes", "{d}/protos01.npy", "--out", "{out}"], r"value range"),
    ("label", "image x 1e200 (distances overflow)", ["label", "{d}/image_huge.npy", "--k", "2", "--out", "{out}"],
     r"overflow|finite"),
    ("label", "--seed 2**40", ["label", "{d}/image.npy", "--k", "2", "--seed", str(2**40), "--out", "{out}"],
     r"seed must be <= 4294967295"),
    ("label", "--neighbourhood 1001 on a 12x12 image", ["label", "{d}/image.npy", "--k", "2", "--neighbourhood",
                                                       "1001", "--out", "{out}"], r"at most 2 \* max"),
    ("label", "--threads 0", ["label", "{d}/image.npy", "--k", "2", "--threads", "0", "--out", "{out}"],
     r"threads"),
    ("label", "a 300-character --out name (ENAMETOOLONG)", ["label", "{d}/image.npy", "--k", "2", "--out",
                                                           "{d}/{long}"], r"--out directory .* File name too long"),
    ("label", "a 300-character image name", ["label", "{d}/{long}.png", "--k", "2", "--out", "{out}"],
     r"image file .* File name too long"),
    ("label", "a 192-byte .npy whose header declares a 3.6 TiB array", ["label", "{d}/huge_header.npy", "--k", "2",
                                                                      "--out", "{out}"],
     r"declares a float64 array of shape \(700000, 700000\) .* truncated"),
    ("label", "--truth: a 192-byte .npy declaring 3.6 TiB", ["label", "{d}/image.npy", "--k", "2", "--truth",
                                                            "{d}/huge_header.npy", "--out", "{out}"],
     r"--truth file .* declares .* truncated"),
    ("label", "a PNG decompression bomb (20000 x 20000 in 100 bytes)", ["label", "{d}/bomb.png", "--k", "2",
                                                                       "--out", "{out}"],
     r"400,000,000 pixels, more than the bound of 89,478,485 pixels"),
    ("label", "a PNG of 10000 x 10000 (PIL's warning zone)", ["label", "{d}/bomb_warn.png", "--k", "2",
                                                               "--out", "{out}"],
     r"100,000,000 pixels, more than the bound"),
    ("label", "--model with an empty image (0 x 8)", ["label", "{d}/empty_image.npy", "--model", "{d}/labeler.pt",
                                                      "--out", "{out}"], r"empty"),
    ("label", "--model with an image of 0 rows in a TIFF", ["label", "{d}/empty.tif", "--model", "{d}/labeler.pt",
                                                            "--out", "{out}"], r"empty"),
    # ------------------------------------------------------------------ train-labeler
    ("train-labeler", "--data: an .npz whose 'images' header declares 3.6 TiB", ["train-labeler", "--data",
                                                                                "{d}/huge_header.npz", "--train", "0",
                                                                                "--out", "{out}"],
     r"array 'images' declares .* truncated"),
    # ------------------------------------------------------------------ learn
    ("learn", "--size 0", ["learn", "--size", "0", "--iters", "1", "--out", "{out}"], r"size"),
    ("learn", "--iters -1", ["learn", "--size", "16", "--iters", "-1", "--out", "{out}"], r"iters"),
    ("learn", "--lr nan", ["learn", "--size", "16", "--iters", "1", "--lr", "nan", "--out", "{out}"], r"\blr\b"),
    ("learn", "--lr -1", ["learn", "--size", "16", "--iters", "1", "--lr", "-1", "--out", "{out}"], r"\blr\b"),
    ("learn", "--m 0", ["learn", "--size", "16", "--iters", "1", "--m", "0", "--out", "{out}"], r"\bm\b"),
    ("learn", "--rank 0", ["learn", "--size", "16", "--iters", "1", "--rank", "0", "--out", "{out}"], r"rank"),
    ("learn", "--rank larger than --m", ["learn", "--size", "16", "--iters", "1", "--m", "3", "--rank", "5",
                                        "--out", "{out}"], r"rank"),
    ("learn", "--step-size 0 (autodiff-euler)", ["learn", "--size", "16", "--iters", "1", "--grad", "autodiff-euler",
                                                "--step-size", "0", "--out", "{out}"], r"step_size"),
    ("learn", "--rho 0", ["learn", "--size", "16", "--iters", "1", "--rho", "0", "--out", "{out}"], r"rho"),
    ("learn", "--T inf", ["learn", "--size", "16", "--iters", "1", "--T", "inf", "--out", "{out}"], r"\bT\b"),
    ("learn", "--tau -1", ["learn", "--size", "16", "--iters", "1", "--tau", "-1", "--out", "{out}"], r"tau"),
    ("learn", "unknown --grad", ["learn", "--grad", "low-rank", "--out", "{out}"], r"invalid choice"),
    ("learn", "--labels without --image", ["learn", "--labels", "{d}/labels.npy", "--out", "{out}"], r"--image"),
    ("learn", "--image without --labels", ["learn", "--image", "{d}/image.npy", "--out", "{out}"], r"--labels"),
    ("learn", "missing --labels file", ["learn", "--image", "{d}/image.npy", "--labels", "{d}/nope.npy",
                                       "--out", "{out}"], r"does not exist|not found"),
    ("learn", "--labels text file named .npy", ["learn", "--image", "{d}/image.npy", "--labels", "{d}/text.npy",
                                               "--out", "{out}"], r"labels"),
    ("learn", "--labels with the wrong shape", ["learn", "--image", "{d}/image.npy", "--labels",
                                               "{d}/labels_small.npy", "--out", "{out}"], r"shape"),
    ("learn", "--labels with float dtype", ["learn", "--image", "{d}/image.npy", "--labels", "{d}/labels_float.npy",
                                           "--out", "{out}"], r"integer"),
    ("learn", "--image with NaN", ["learn", "--image", "{d}/nan_image.npy", "--labels", "{d}/labels.npy",
                                  "--out", "{out}"], r"finite|NaN"),
    ("learn", "--out below a regular file", ["learn", "--size", "16", "--iters", "1", "--out", "{blocked}"], r"out"),
    # ------------------------------------------------------------------ gradcheck
    ("gradcheck", "--size 0", ["gradcheck", "--size", "0", "--out", "{out}"], r"size"),
    ("gradcheck", "--m 0", ["gradcheck", "--size", "16", "--m", "0", "--out", "{out}"], r"\bm\b"),
    ("gradcheck", "--ref-step 0", ["gradcheck", "--size", "16", "--ref-step", "0", "--out", "{out}"], r"step_size"),
    ("gradcheck", "--ref-m 0 (autodiff-expint reference)", ["gradcheck", "--size", "16", "--reference",
                                                            "autodiff-expint", "--ref-m", "0", "--out", "{out}"],
     r"\bm\b|ref-m"),
    ("gradcheck", "--min-norm -1", ["gradcheck", "--size", "16", "--min-norm", "-1", "--out", "{out}"], r"min-norm"),
    ("gradcheck", "--min-norm nan", ["gradcheck", "--size", "16", "--min-norm", "nan", "--out", "{out}"],
     r"min-norm"),
    ("gradcheck", "--study-iters 0 with --studies", ["gradcheck", "--size", "16", "--studies", "--study-iters", "0",
                                                     "--out", "{out}"], r"study-iters|iters"),
    ("gradcheck", "unknown --method", ["gradcheck", "--method", "exakt", "--out", "{out}"], r"invalid choice"),
    ("gradcheck", "--image text file named .png", ["gradcheck", "--image", "{d}/text.png", "--labels",
                                                   "{d}/labels.npy", "--out", "{out}"], r"not an image"),
    ("gradcheck", "--out below a regular file", ["gradcheck", "--size", "16", "--out", "{blocked}"], r"out"),
    # ------------------------------------------------------------------ predict
    ("predict", "--size 0", ["predict", "--size", "0", "--iters", "1", "--out", "{out}"], r"size"),
    ("predict", "--iters -1", ["predict", "--size", "16", "--iters", "-1", "--out", "{out}"], r"iters"),
    ("predict", "--lr 0", ["predict", "--size", "16", "--iters", "1", "--lr", "0", "--out", "{out}"], r"\blr\b"),
    ("predict", "--num-prototypes 0", ["predict", "--size", "16", "--iters", "1", "--num-prototypes", "0",
                                       "--out", "{out}"], r"num_prototypes|num-prototypes"),
    ("predict", "--rho nan", ["predict", "--size", "16", "--iters", "1", "--rho", "nan", "--out", "{out}"], r"rho"),
    ("predict", "missing --facades file", ["predict", "--facades", "{d}/nope.npz", "--out", "{out}"],
     r"does not exist"),
    ("predict", "--facades text file", ["predict", "--facades", "{d}/text.npy", "--out", "{out}"], r"npz"),
    ("predict", "--facades --test index out of range", ["predict", "--facades", "{d}/facades.npz", "--test", "7",
                                                        "--out", "{out}"], r"index"),
    ("predict", "--facades --downsample 0", ["predict", "--facades", "{d}/facades.npz", "--downsample", "0",
                                             "--train", "0", "--test", "1", "--out", "{out}"], r"downsample"),
    ("predict", "missing --model file", ["predict", "--model", "{d}/nope.pt", "--image", "{d}/image.npy",
                                         "--out", "{out}"], r"does not exist|not found"),
    ("predict", "--model text file", ["predict", "--model", "{d}/text.npy", "--image", "{d}/image.npy",
                                      "--out", "{out}"], r"model"),
    ("predict", "--model without --image", ["predict", "--model", "{d}/predictor.pt", "--out", "{out}"], r"--image"),
    ("predict", "--model with an image of other channels", ["predict", "--model", "{d}/predictor.pt", "--image",
                                                            "{d}/image_rgb.npy", "--out", "{out}"], r"features"),
    ("predict", "--model with an empty image (0 x 8)", ["predict", "--model", "{d}/predictor.pt", "--image",
                                                        "{d}/empty_image.npy", "--out", "{out}"], r"empty"),
    ("predict", "--model with a PNG of 0 rows", ["predict", "--model", "{d}/predictor.pt", "--image",
                                                 "{d}/empty_rows.png", "--out", "{out}"], r"not an image|empty"),
    ("predict", "--model --image with NaN", ["predict", "--model", "{d}/predictor.pt", "--image",
                                             "{d}/nan_image.npy", "--out", "{out}"], r"finite|NaN"),
    ("predict", "--model --labels with the wrong shape", ["predict", "--model", "{d}/predictor.pt", "--image",
                                                          "{d}/image.npy", "--labels", "{d}/labels_small.npy",
                                                          "--out", "{out}"], r"shape"),
    ("predict", "--model --labels text file named .npy", ["predict", "--model", "{d}/predictor.pt", "--image",
                                                          "{d}/image.npy", "--labels", "{d}/text.npy",
                                                          "--out", "{out}"], r"labels"),
    ("predict", "--sigma 0", ["predict", "--size", "16", "--iters", "1", "--sigma", "0", "--out", "{out}"],
     r"sigma must be finite and > 0"),
    ("predict", "--model --prototypes of other channels", ["predict", "--model", "{d}/predictor.pt", "--image",
                                                           "{d}/image.npy", "--prototypes", "{d}/protos_c1.npy",
                                                           "--out", "{out}"], r"prototypes"),
    ("predict", "unknown --facade-prototypes", ["predict", "--facades", "{d}/facades.npz", "--facade-prototypes",
                                                "test", "--out", "{out}"], r"invalid choice"),
    ("predict", "unknown --scenario", ["predict", "--scenario", "colour", "--out", "{out}"], r"invalid choice"),
    ("predict", "--out below a regular file", ["predict", "--size", "16", "--iters", "1", "--out", "{blocked}"],
     r"out"),
    # ------------------------------------------------------------------ ising
    ("ising", "--rows 0", ["ising", "--rows", "0", "--out", "{out}"], r"rows"),
    ("ising", "--cols -1", ["ising", "--cols", "-1", "--out", "{out}"], r"cols"),
    ("ising", "--iters -1", ["ising", "--iters", "-1", "--out", "{out}"], r"iterations|iters"),
    ("ising", "--batch-size 0", ["ising", "--batch-size", "0", "--out", "{out}"], r"batch"),
    ("ising", "--lr nan", ["ising", "--lr", "nan", "--out", "{out}"], r"\blr\b"),
    ("ising", "--field inf", ["ising", "--field", "inf", "--out", "{out}"], r"field"),
    ("ising", "--eval-samples 0", ["ising", "--eval-samples", "0", "--out", "{out}"], r"eval"),
    ("ising", "--gibbs-samples 0", ["ising", "--gibbs-samples", "0", "--out", "{out}"], r"gibbs"),
    ("ising", "--mf-restarts 0", ["ising", "--mf-restarts", "0", "--out", "{out}"], r"restarts"),
    ("ising", "--init-noise -1", ["ising", "--init-noise", "-1", "--out", "{out}"], r"init_noise|init-noise"),
    ("ising", "--threads 0", ["ising", "--threads", "0", "--out", "{out}"], r"threads"),
    ("ising", "unknown --entropy-estimator", ["ising", "--entropy-estimator", "scor", "--out", "{out}"],
     r"invalid choice"),
    ("ising", "--out below a regular file", ["ising", "--out", "{blocked}"], r"out"),
    # ------------------------------------------------------------------ gfe train
    ("gfe train", "unknown --dataset", ["gfe", "train", "--dataset", "digit", "--out", "{out}"], r"dataset"),
    ("gfe train", "unknown --model", ["gfe", "train", "--model", "gfee", "--out", "{out}"], r"model"),
    ("gfe train", "unknown --solver", ["gfe", "train", "--solver", "amdd", "--out", "{out}"], r"solver"),
    ("gfe train", "unknown --optimizer", ["gfe", "train", "--optimizer", "rmsprob", "--out", "{out}"], r"optimizer"),
    ("gfe train", "unknown --grid", ["gfe", "train", "--grid", "lin", "--out", "{out}"], r"grid"),
    ("gfe train", "--train-size 0", ["gfe", "train", "--train-size", "0", "--out", "{out}"], r"train"),
    ("gfe train", "--train-size larger than the data", ["gfe", "train", "--train-size", "100000", "--out", "{out}"],
     r"train"),
    ("gfe train", "--batch-size 0", ["gfe", "train", "--batch-size", "0", "--out", "{out}"], r"batch"),
    ("gfe train", "--epochs 0", ["gfe", "train", "--epochs", "0", "--out", "{out}"], r"epochs"),
    ("gfe train", "--lr nan", ["gfe", "train", "--lr", "nan", "--out", "{out}"], r"\blr\b"),
    ("gfe train", "--val-size 0", ["gfe", "train", "--val-size", "0", "--out", "{out}"], r"val"),
    ("gfe train", "--steps 0", ["gfe", "train", "--steps", "0", "--out", "{out}"], r"steps"),
    ("gfe train", "--threads 0", ["gfe", "train", "--threads", "0", "--train-size", "8", "--val-size", "8",
                                       "--eval-every", "1000", "--out", "{out}"], r"threads"),
    ("gfe train", "mnist with a missing --data-dir", ["gfe", "train", "--dataset", "mnist", "--data-dir",
                                                      "{d}/nope", "--out", "{out}"], r"does not exist|not found"),
    ("gfe train", "--device cuda on a machine without CUDA", ["gfe", "train", "--device", "cuda:7",
                                                              "--out", "{out}"], r"CUDA|cuda"),
    ("gfe train", "--device tpu", ["gfe", "train", "--device", "tpu", "--out", "{out}"], r"device"),
    ("gfe train", "--out below a regular file", ["gfe", "train", "--train-size", "8", "--out", "{blocked}"], r"out"),
    # ------------------------------------------------------------------ gfe compare
    ("gfe compare", "--train-sizes not integers", ["gfe", "compare", "--train-sizes", "a,b", "--out", "{out}"],
     r"train-sizes"),
    ("gfe compare", "--train-sizes empty", ["gfe", "compare", "--train-sizes", ",", "--out", "{out}"],
     r"train-sizes"),
    ("gfe compare", "--train-sizes 0", ["gfe", "compare", "--train-sizes", "0", "--out", "{out}"], r"train-sizes"),
    ("gfe compare", "--train-sizes larger than the data", ["gfe", "compare", "--train-sizes", "100000",
                                                           "--out", "{out}"], r"train-sizes"),
    ("gfe compare", "--seeds 0", ["gfe", "compare", "--train-sizes", "8", "--seeds", "0", "--out", "{out}"],
     r"seeds"),
    ("gfe compare", "--images 0", ["gfe", "compare", "--train-sizes", "8", "--images", "0", "--out", "{out}"],
     r"images"),
    ("gfe compare", "--ae-factor 0", ["gfe", "compare", "--train-sizes", "8", "--ae-factor", "0", "--out", "{out}"],
     r"ae.factor"),
    ("gfe compare", "unknown --optimizer", ["gfe", "compare", "--train-sizes", "8", "--optimizer", "adamm",
                                            "--out", "{out}"], r"optimizer"),
    ("gfe compare", "--out below a regular file", ["gfe", "compare", "--train-sizes", "8", "--images", "8",
                                                   "--full-images", "8", "--seeds", "1", "--out", "{blocked}"], r"out"),
    # ------------------------------------------------------------------ reproduce
    ("reproduce", "unknown --parts", ["reproduce", "--parts", "ising", "--out", "{out}"], r"invalid choice"),
    ("reproduce", "--out below a regular file", ["reproduce", "--parts", "learning", "--out", "{blocked}"], r"--out"),
]

#: Runs that must not mix or pass as results: (command, situation, earlier steps, argv, exit code, regex).
#: An earlier step is an argv template run first (it must succeed), ``("truncate", path)`` or
#: ``("lock", dir)`` (the directory is held by another writer while the case runs), ``("enospc", spare)`` (every
#: write but that of the file ``spare`` fails with a full disk) or ``("remove_out",)`` (``--out`` is removed
#: after the computation, before ``label`` writes its labels).
SEQUENCES = [
    ("learn", "--resume into a run of another problem (seed, rho)",
     [["learn", "--size", "16", "--iters", "2", "--seed", "3", "--out", "{out}"]],
     ["learn", "--size", "16", "--iters", "4", "--seed", "4", "--rho", "0.5", "--resume", "--out", "{out}"], 2,
     r"belongs to a different run \(data:"),
    ("learn", "--resume after a shape change (--size 32 on a 16x16 run)",
     [["learn", "--size", "16", "--iters", "2", "--out", "{out}"]],
     ["learn", "--size", "32", "--iters", "4", "--resume", "--out", "{out}"], 2, r"belongs to a different run"),
    ("learn", "--resume --optimizer rgd on an adam run",
     [["learn", "--size", "16", "--iters", "2", "--out", "{out}"]],
     ["learn", "--size", "16", "--iters", "4", "--optimizer", "rgd", "--resume", "--out", "{out}"], 2,
     r"config.optimizer: 'adam' in the checkpoint, 'rgd' now\); start afresh with --overwrite"),
    ("learn", "--resume from a truncated checkpoint",
     [["learn", "--size", "16", "--iters", "2", "--out", "{out}"], ("truncate", "{out}/checkpoint_lowrank.pt")],
     ["learn", "--size", "16", "--iters", "4", "--resume", "--out", "{out}"], 2, r"truncated, corrupt"),
    ("ising", "a second run into a used --out (another --coupling)",
     [["ising", "--rows", "2", "--cols", "3", "--iters", "5", "--batch-size", "8", "--eval-samples", "500",
       "--gibbs-samples", "500", "--mf-restarts", "2", "--out", "{out}"]],
     ["ising", "--rows", "2", "--cols", "3", "--iters", "5", "--batch-size", "8", "--eval-samples", "500",
      "--gibbs-samples", "500", "--mf-restarts", "2", "--coupling", "50", "--out", "{out}"], 2,
     r"holds the outputs of an earlier `flowlearn ising` run"),
    ("ising", "--resume with another model (--coupling 50)",
     [["ising", "--rows", "2", "--cols", "3", "--iters", "5", "--batch-size", "8", "--eval-samples", "500",
       "--gibbs-samples", "500", "--mf-restarts", "2", "--out", "{out}"]],
     ["ising", "--rows", "2", "--cols", "3", "--iters", "5", "--batch-size", "8", "--eval-samples", "500",
      "--gibbs-samples", "500", "--mf-restarts", "2", "--coupling", "50", "--resume", "--out", "{out}"], 2,
     r"belongs to a different run \(model:"),
    ("label", "a second writer while --out is in use", [("lock", "{out}")],
     ["label", "{d}/image.npy", "--k", "2", "--out", "{out}"], 2, r"is in use by flowlearn label \(pid"),
    ("label", "linearized flow with --T 1e6 (diverges or exhausts its sub-steps)", [],
     ["label", "{d}/image.npy", "--k", "2", "--flow", "linearized", "--T", "1e6", "--out", "{out}"], 3,
     r"status (max_substeps|nonfinite).*options: --T, --rho"),
    ("label", "--rho 1e300 (the data term vanishes)", [],
     ["label", "{d}/image.npy", "--k", "2", "--rho", "1e300", "--out", "{out}"], 3, r"status undecided.*lower rho"),
    # hostile run directories: nothing outside --out is ever written or removed (the decoys are checked)
    ("label", "--overwrite with a manifest listing '../decoy.txt'",
     [["label", "{d}/image.npy", "--k", "2", "--out", "{out}"], ("manifest_output", "../decoy.txt")],
     ["label", "{d}/image.npy", "--k", "2", "--overwrite", "--out", "{out}"], 2, r"lists outputs outside the directory"),
    ("label", "--overwrite with a manifest listing an absolute directory 'DIR/decoy_dir/'",
     [["label", "{d}/image.npy", "--k", "2", "--out", "{out}"], ("manifest_output", "{d}/decoy_dir/")],
     ["label", "{d}/image.npy", "--k", "2", "--overwrite", "--out", "{out}"], 2, r"lists outputs outside the directory"),
    ("label", "--overwrite with a manifest that is a JSON list",
     [["label", "{d}/image.npy", "--k", "2", "--out", "{out}"], ("manifest", "[1, 2]")],
     ["label", "{d}/image.npy", "--k", "2", "--overwrite", "--out", "{out}"], 2, r"is not a flowlearn manifest"),
    ("label", "--overwrite with a manifest whose outputs are null",
     [["label", "{d}/image.npy", "--k", "2", "--out", "{out}"], ("manifest", '{"outputs": null}')],
     ["label", "{d}/image.npy", "--k", "2", "--overwrite", "--out", "{out}"], 2, r"is not a flowlearn manifest"),
    ("label", "a lock file planted as a link to a file outside --out", [("lock_link", "{d}/decoy.txt")],
     ["label", "{d}/image.npy", "--k", "2", "--out", "{out}"], 2, r"lock file .flowlearn.lock that is not a regular"),
    ("label", "a lock file planted as a dangling link", [("lock_link", "{d}/nowhere.txt")],
     ["label", "{d}/image.npy", "--k", "2", "--out", "{out}"], 2, r"lock file .flowlearn.lock that is not a regular"),
    # an earlier run in --out: label has no --resume, and says so before it computes anything
    ("label", "a second run into a used --out (label has no --resume)",
     [["label", "{d}/image.npy", "--k", "2", "--out", "{out}"]],
     ["label", "{d}/image.npy", "--k", "3", "--out", "{out}"], 2,
     r"`flowlearn label` does not resume: pass --overwrite to replace it or choose another --out$"),
    # the environment fails during the run: one line naming the path
    ("label", "the disk fills up while the outputs are written (ENOSPC)", [("enospc", "manifest.json")],
     ["label", "{d}/image.npy", "--k", "2", "--out", "{out}"], 2,
     r"cannot write '.*/out/prototypes\.npy': No space left on device \(ENOSPC\); free disk space"),
    ("label", "--out removed during the run", [("remove_out",)],
     ["label", "{d}/image.npy", "--k", "2", "--out", "{out}"], 2,
     (r"cannot write '.*/out/labels\.npy': No such file or directory \(ENOENT\); the directory '.*/out' no longer "
     r"exists \(removed during the run\?\)")),
]

#: a path component longer than any file system allows (255 bytes): ENAMETOOLONG
LONG_NAME = "a" * 300

#: known failures (command, bad input) -> reason; empty: every case passes
XFAIL: dict = {}


def make_fixtures(d: Path) -> None:
    """The input files the cases refer to (all tiny), and decoys outside every ``--out``."""
    import torch

    (d / "decoy.txt").write_text("decoy")
    (d / "decoy_dir").mkdir(exist_ok=True)
    (d / "decoy_dir" / "inner.txt").write_text("decoy")

    from flowlearn.learning.predictor import PatchPredictor

    rng = np.random.default_rng(0)
    (d / "text.png").write_text("this is not an image\n")
    (d / "text.npy").write_text("this is not an array\n")
    image = rng.random((12, 12))
    np.save(d / "image.npy", image)
    np.save(d / "image_rgb.npy", rng.random((12, 12, 3)))
    nan_image = image.copy()
    nan_image[3, 4] = np.nan
    np.save(d / "nan_image.npy", nan_image)
    inf_image = image.copy()
    inf_image[0, 0] = np.inf
    np.save(d / "inf_image.npy", inf_image)
    np.save(d / "empty_image.npy", np.zeros((0, 8)))
    np.save(d / "image4d.npy", np.zeros((2, 4, 4, 1)))
    np.save(d / "complex_image.npy", image.astype(np.complex128))
    np.save(d / "protos_c1.npy", np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    np.save(d / "protos_nan.npy", np.array([[0.0], [np.nan]]))
    labels = (image > 0.5).astype(np.int64)
    np.save(d / "labels.npy", labels)
    np.save(d / "labels_small.npy", labels[:5, :5])
    np.save(d / "labels_float.npy", labels.astype(np.float64))
    f = rng.random((2, 8, 8, 3))
    lab = (f[..., 0] > 0.5).astype(np.int64)
    np.savez(d / "facades.npz", f=f, l=lab)
    pred = PatchPredictor(4, feature_dim=9)
    torch.save({"state": pred.state_dict(), "num_prototypes": 4, "feature_dim": 9,
                "prototypes": torch.tensor([[0.0], [1.0]]), "rho": 0.1, "T": 5.0}, d / "predictor.pt")
    np.save(d / "image_uint8.npy", (image * 255).astype(np.uint8))
    np.save(d / "protos01.npy", np.array([[0.0], [1.0]]))
    np.save(d / "image_huge.npy", image * 1e200)
    (d / "regular_file").write_text("a regular file, not a directory\n")
    _hostile_fixtures(d)


def _png(width: int, height: int) -> bytes:
    """A PNG of only its header chunks: Pillow reads its size without decoding anything."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def _huge_npy_header() -> bytes:
    """192 bytes: a .npy header declaring a (700000, 700000) float64 array (3.6 TiB) and 64 bytes of data."""
    import struct

    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (700000, 700000), }"
    header += " " * (117 - len(header)) + "\n"
    blob = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    return blob + b"\0" * (192 - len(blob))


def _hostile_fixtures(d: Path) -> None:
    """Files made to break readers: a header declaring 3.6 TiB, decompression bombs, empty images."""
    import warnings
    import zipfile

    import tifffile

    from flowlearn.learning.labeler import LabelerModel, save_model
    from flowlearn.learning.labeler_config import LabelerConfig

    (d / "huge_header.npy").write_bytes(_huge_npy_header())
    with zipfile.ZipFile(d / "huge_header.npz", "w") as z:
        z.writestr("images.npy", _huge_npy_header())
        buf = io.BytesIO()
        np.save(buf, np.zeros((1, 4, 4), dtype=np.int64))
        z.writestr("labels.npy", buf.getvalue())
    (d / "bomb.png").write_bytes(_png(20000, 20000))       # above 2x PIL.Image.MAX_IMAGE_PIXELS: PIL raises
    (d / "bomb_warn.png").write_bytes(_png(10000, 10000))  # between 1x and 2x: PIL only warns
    (d / "empty_rows.png").write_bytes(_png(8, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tifffile.imwrite(d / "empty.tif", np.zeros((0, 8), dtype=np.uint8))
    model = LabelerModel(LabelerConfig(layers=1, features=2, hidden=4, scales=2), 1, 2)
    save_model(d / "labeler.pt", model, {"input_scale": 255.0, "value_range": [0.0, 1.0], "input_dtype": "uint8"})


def snapshot(d: Path) -> dict:
    """Every file below ``d`` with its size and modification time."""
    return {str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(d.rglob("*"))}


def run_case(argv_template, d: Path):
    """Run one case in-process; ``(exit code, stderr, out path)``."""
    out = d / "out"
    blocked = d / "regular_file" / "out"
    argv = [a.format(d=d, out=out, blocked=blocked, long=LONG_NAME) for a in argv_template]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse errors
            code = exc.code
    return code, err.getvalue(), out


def error_line(stderr: str) -> str:
    """The error message: the last non-empty line (argparse prints a usage line before it)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _params():
    for command, bad, argv, pattern in CASES:
        marks = []
        if (command, bad) in XFAIL:
            marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[(command, bad)]))
        yield pytest.param(command, argv, pattern, id=f"{command}: {bad}", marks=marks)


@pytest.mark.parametrize("command, argv, pattern", list(_params()))
def test_bad_input(command, argv, pattern, tmp_path, monkeypatch):
    make_fixtures(tmp_path)
    monkeypatch.chdir(tmp_path)  # a write to the working directory would show in the snapshot
    before = snapshot(tmp_path)
    code, stderr, out = run_case(argv, tmp_path)
    line = error_line(stderr)
    assert code == 2, f"exit code {code}, stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    if stderr.startswith("usage:"):  # argparse: the usage block, then one error line
        assert line.startswith(f"flowlearn {command}: error: argument "), line
    else:  # our own errors: exactly one line, prefixed by the command
        assert len(stderr.strip().splitlines()) == 1, f"expected a single stderr line, got:\n{stderr}"
        assert line.startswith(f"flowlearn {command.split()[0]}: error: "), line
    assert re.search(pattern, line), f"{pattern!r} not in {line!r}"
    assert not out.exists(), f"output directory {out} was created"
    assert snapshot(tmp_path) == before, "files were written or modified"


def full_disk(spare: str):
    """An :func:`flowlearn.io.atomic_write` on a full disk: every write fails with ``ENOSPC`` except that of the
    file named ``spare`` (the manifest, so that the test can read the status it got)."""
    real = flowlearn.io.atomic_write

    @contextlib.contextmanager
    def atomic_write(path, mode="wb"):
        if Path(path).name != spare:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        with real(path, mode) as fh:
            yield fh

    return atomic_write


def removing_out_first(out: Path):
    """``label``'s output writer, preceded by the removal of ``--out`` (another process deletes it mid-run)."""
    real = label_cli.write_labeling

    def write_labeling(*args, **kwargs):
        shutil.rmtree(out)
        return real(*args, **kwargs)

    return write_labeling


def run_sequence(steps, argv, d: Path):
    """Run the earlier ``steps`` of a :data:`SEQUENCES` case, then ``argv``; ``(exit code, stderr, out)``."""
    from flowlearn.engine import RunDirectory

    out = d / "out"
    with contextlib.ExitStack() as stack:
        for step in steps:
            if step[0] == "truncate":
                p = Path(step[1].format(d=d, out=out))
                p.write_bytes(p.read_bytes()[:100])
            elif step[0] == "lock":
                stack.enter_context(RunDirectory(Path(step[1].format(d=d, out=out)), command="label"))
            elif step[0] in ("manifest_output", "manifest"):
                m = out / "manifest.json"
                if step[0] == "manifest":
                    m.write_text(step[1])
                else:
                    blob = json.loads(m.read_text())
                    blob["outputs"].append(step[1].format(d=d, out=out))
                    m.write_text(json.dumps(blob))
            elif step[0] == "lock_link":
                out.mkdir(parents=True, exist_ok=True)
                os.symlink(step[1].format(d=d, out=out), out / ".flowlearn.lock")
            elif step[0] == "enospc":
                stack.enter_context(mock.patch.object(flowlearn.io, "atomic_write", full_disk(spare=step[1])))
            elif step[0] == "remove_out":
                stack.enter_context(mock.patch.object(label_cli, "write_labeling", removing_out_first(out)))
            else:
                code, err, _ = run_case(step, d)
                assert code == 0, err
        return run_case(argv, d)


def _sequence_params():
    for command, situation, steps, argv, code, pattern in SEQUENCES:
        yield pytest.param(steps, argv, code, pattern, id=f"{command}: {situation}")


@pytest.mark.parametrize("steps, argv, expected_code, pattern", list(_sequence_params()))
def test_runs_never_mix_or_pass_failures_as_results(steps, argv, expected_code, pattern, tmp_path, monkeypatch):
    make_fixtures(tmp_path)
    monkeypatch.chdir(tmp_path)
    fresh = not steps
    code, stderr, out = run_sequence(steps, argv, tmp_path)
    assert code == expected_code, f"exit code {code}, stderr:\n{stderr}"
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert re.search(pattern, error_line(stderr)), f"{pattern!r} not in {error_line(stderr)!r}"
    if fresh:
        assert not out.exists(), "a failed computation wrote outputs"
    assert (tmp_path / "decoy.txt").read_text() == "decoy" and (tmp_path / "decoy_dir" / "inner.txt").exists()
    assert not (tmp_path / "nowhere.txt").exists()


def _markdown() -> str:
    import tempfile

    rows = ["| command | bad input | error seen (exit code) |", "|---|---|---|"]
    for command, bad, argv, _ in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            make_fixtures(d)
            cwd = os.getcwd()
            os.chdir(d)
            try:
                code, stderr, _ = run_case(argv, d)
            except Exception as exc:  # noqa: BLE001 -- a crash is what the table must show
                code, stderr = "crash", f"{type(exc).__name__}: {exc}"
            finally:
                os.chdir(cwd)
            line = error_line(stderr).replace(str(d), "DIR").replace("|", "\\|").replace(LONG_NAME, "a…a")
            rows.append(f"| {command} | {bad} | `{line}` ({code}) |")
    rows += ["", ("Runs that must not mix, and computations that must not pass as results "
             "(`SEQUENCES`: earlier steps, then the command):"), "",
             "| command | situation | error seen (exit code) |", "|---|---|---|"]
    for command, situation, steps, argv, _, _ in SEQUENCES:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            make_fixtures(d)
            cwd = os.getcwd()
            os.chdir(d)
            try:
                code, stderr, _ = run_sequence(steps, argv, d)
            except Exception as exc:  # noqa: BLE001
                code, stderr = "crash", f"{type(exc).__name__}: {exc}"
            finally:
                os.chdir(cwd)
            line = error_line(stderr).replace(str(d), "DIR").replace("|", "\\|")
            line = re.sub(r"pid \d+", "pid N", re.sub(r"'[0-9a-f]{16}'", "'…'", line))
            rows.append(f"| {command} | {situation} | `{line}` ({code}) |")
    return "\n".join(rows)


if __name__ == "__main__":
    os.environ.setdefault("FLOWLEARN_NO_PROGRESS", "1")
    print(_markdown())
    sys.exit(0)
