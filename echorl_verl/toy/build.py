"""Build the toy task: tokenizer + warmed-up Qwen2 model + train/val parquet files, cached.

    python -m echorl_verl.toy.build --output_dir DIR [--size small] [--sft_steps 560] ...

Layout of DIR:
    model/              HF checkpoint (config.json, model.safetensors, tokenizer files)
    data/train.parquet  data/val.parquet
    build_report.json   parameter count, SFT losses, group shares after warm-up, timings
    manifest.json       the settings and their hash; written LAST and atomically

A DIR whose manifest has the same settings hash is a complete build and is reused as is; anything
else (no manifest, other settings, a crash half-way) is rebuilt. A lock file serialises concurrent
builds of the same DIR (e.g. two test sessions).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass

from echorl_verl.atomic import build_lock

# Bump when the build's output changes for the same settings (task format, tokenizer, training loop).
BUILD_VERSION = 3  # 3: heads of 32 dimensions (vLLM's CPU attention)
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class BuildSettings:
    size: str = "small"
    # Measured (lr 3e-3, batch 32; 8 samples at T=1 on 64 prompts, all/mixed/none groups), heads of 32 and one
    # KV head (build 3): 480 steps 2/36/62%, 540 steps 0/28/72%, 560 steps 11/58/31%, 600 steps 16/70/14% (noisy:
    # 64 prompts; the warm-up is not monotonic). Build 2 (heads of 24): 480 steps gave 8/56/36%.
    sft_steps: int = 560
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    train_size: int = 2048
    val_size: int = 64
    min_digits: int = 2
    max_digits: int = 5
    eval_prompts: int = 64  # prompts x 8 samples for the group shares in build_report.json (0: skip)

    def digest(self) -> str:
        blob = json.dumps({"build_version": BUILD_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Tests use this: a model that trains in seconds; its policy is mostly wrong, which is enough for
# checking that the pipeline runs and its metrics are finite.
QUICK = BuildSettings(size="tiny", sft_steps=60, train_size=256, val_size=16, max_digits=3, eval_prompts=0)


def is_complete(output_dir: str, settings: BuildSettings) -> bool:
    """True when `output_dir` holds a finished build of exactly these settings."""
    try:
        with open(os.path.join(output_dir, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return False
    paths = ("model/config.json", "model/tokenizer_config.json", "data/train.parquet", "data/val.parquet")
    return manifest.get("hash") == settings.digest() and all(
        os.path.exists(os.path.join(output_dir, p)) for p in paths
    )


def paths(output_dir: str) -> dict[str, str]:
    """Where the pieces of a build live."""
    return {
        "model": os.path.join(output_dir, "model"),
        "train": os.path.join(output_dir, "data", "train.parquet"),
        "val": os.path.join(output_dir, "data", "val.parquet"),
        "report": os.path.join(output_dir, "build_report.json"),
    }


def _write_json_atomic(obj, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def build(output_dir: str, settings: BuildSettings = BuildSettings(), force: bool = False,
          progress: bool = True) -> dict:
    """Build (or reuse) the toy task in `output_dir`; returns the build report (dict)."""
    import torch

    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    with build_lock(output_dir):
        if not force and is_complete(output_dir, settings):
            with open(paths(output_dir)["report"], encoding="utf-8") as f:
                return {**json.load(f), "cached": True}
        # Invalidate first: from here until the new manifest lands, the folder is not a build.
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(output_dir, MANIFEST))
        # 2 threads only when idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE, set by main()
        # before torch loads); with spinning threads on a busy 2-core machine, 1 thread is faster.
        torch.set_num_threads(2 if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" else 1)
        report = _build_into(output_dir, settings, progress)
        _write_json_atomic(report, paths(output_dir)["report"])
        _write_json_atomic({"hash": settings.digest(), "settings": dataclasses.asdict(settings),
                            "build_version": BUILD_VERSION}, os.path.join(output_dir, MANIFEST))
        return {**report, "cached": False}


def _build_into(output_dir: str, s: BuildSettings, progress: bool) -> dict:
    from .data import make_splits, write_parquet
    from .evaluate import greedy_accuracy, group_shares
    from .model import build_model, num_parameters
    from .task import sample_problems
    from .tokenizer import build_tokenizer, save_tokenizer
    from .warmup import warmup_sft

    t0 = time.time()
    p = paths(output_dir)
    splits = make_splits(s.train_size, s.val_size, s.seed, s.min_digits, s.max_digits)
    write_parquet(splits["train"], p["train"])
    write_parquet(splits["val"], p["val"])

    tokenizer = build_tokenizer()
    model = build_model(tokenizer, s.size, s.seed)
    t_sft = time.time()
    losses = warmup_sft(model, tokenizer, s.sft_steps, s.batch_size, s.lr, s.seed, s.min_digits, s.max_digits,
                        progress=progress)
    sft_s = time.time() - t_sft

    tmp_model = f"{p['model']}.tmp-{os.getpid()}"
    shutil.rmtree(tmp_model, ignore_errors=True)
    model.save_pretrained(tmp_model)
    save_tokenizer(tokenizer, tmp_model)
    shutil.rmtree(p["model"], ignore_errors=True)
    os.replace(tmp_model, p["model"])

    report = {
        "settings_hash": s.digest(),
        "params": num_parameters(model),
        "sft_seconds": round(sft_s, 1),
        "sft_loss_first_last": [round(losses[0], 4), round(losses[-1], 4)] if losses else [],
    }
    if s.eval_prompts:
        t_eval = time.time()
        problems = sample_problems(s.seed + 3000, s.eval_prompts, s.min_digits, s.max_digits)
        report["group_shares_t1_n8"] = group_shares(model, tokenizer, problems, n=8, seed=s.seed)
        report["greedy_acc"] = greedy_accuracy(model, tokenizer, problems)
        report["eval_seconds"] = round(time.time() - t_eval, 1)
    report["build_seconds"] = round(time.time() - t0, 1)
    return report


def main(argv=None) -> None:
    # Before torch loads OpenMP: idle threads sleep instead of spinning (on a shared 2-core machine
    # spinning made 2 threads 4x slower than 1; with PASSIVE, 2 threads are faster).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    defaults = BuildSettings()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output_dir", required=True, help="folder for model/, data/, manifest.json")
    ap.add_argument("--quick", action="store_true", help="the tiny test build (seconds, low accuracy)")
    for f in dataclasses.fields(BuildSettings):
        ap.add_argument(f"--{f.name}", type=type(getattr(defaults, f.name)), default=None,
                        help=f"default {getattr(defaults, f.name)}")
    ap.add_argument("--force", action="store_true", help="rebuild even when a complete build exists")
    args = ap.parse_args(argv)
    base = QUICK if args.quick else defaults
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(BuildSettings)
                 if getattr(args, f.name) is not None}
    settings = dataclasses.replace(base, **overrides)
    report = build(args.output_dir, settings, force=args.force)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
