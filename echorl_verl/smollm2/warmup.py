"""A short deterministic SFT of the converted SmolLM2 on worked multi-operation problems, built once and cached.

    python -m echorl_verl.smollm2.warmup [--smollm2_dir DIR] [--cache_dir CACHE] [--steps N] [--batch_size 8]
                                         [--lr 3e-5] [--operations 2] [--val_size 64] [--data_seed 0] [--seed 0]
                                         [--snapshots 40,80] [--force] [--print_model_path]

Why: with one-operation problems a SmolLM2 success has 2 steps, so EchoRL's peak-step prefix is the whole response
in most clips, and two-operation problems are out of the raw model's reach (0/16 greedy; ../shared/notes/
smollm2.md). Issue 15's regime starts RL from a model that answers worked multi-step problems about half the time.
This module teaches it the format: `task.worked_solution` + `<|im_end|>` after the exact prompt verl sends
(`task.messages` through the tokenizer's chat template with the generation prompt, no special tokens added),
loss on the response tokens (and the eos) only, token-mean over the batch.

Determinism: the problems of step k are a function of (seed, k) only (`step_problems`: the task's mix, never a
validation question of `echorl_verl.smollm2.data --seed data_seed --val_size val_size` for those operations);
fixed torch seed, fixed number of AdamW steps, constant learning rate after a linear warm-up of `lr_warmup` steps.
So the first k steps of a longer run are exactly a k-step run, and `--snapshots` saves those as complete builds
of their own settings on the way (measuring several warm-up lengths costs one SFT). Same machine and threads,
same weights.

Precision: master weights, AdamW state and the saved model are float32; the forward and backward run under CPU
autocast bfloat16 (matmuls in bf16: 4.1 s against 6.7 s in float32 for a batch of 8 on this busy 2-core machine;
the loss moved from 0.2703 to 0.2688 nats/token; the SFT target is a format, and the RL actor reads the float32
weights); the logits of the response positions are cast to float32 before the cross-entropy. The chat prefix
that all rows share (system prompt and the two worked examples, ~170 of ~230 prompt tokens) is run once per batch
and its key/value cache repeated for every row (`response_loss`): the plain forward's loss
(tests/test_smollm2_warmup.py), 4.1 s against 6.5-9.8 s a step.

Layout: CACHE/<hash>/ (CACHE default $ECHORL_CACHE/smollm2-warm; the hash covers the settings, the base model's
conversion and WARMUP_VERSION) holds model/ (an HF folder: weights, tokenizer, chat template, generation config)
and manifest.json, written last (echorl_verl.atomic): only a folder whose manifest names the same hash and whose
model files exist is complete, and it is returned at once (`"cached": true`). A lock serialises builds.
Bad input ends with one line naming the fix (WarmupError; exit code 2 from the command line).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass

from echorl_verl.atomic import build_lock, write_text
from echorl_verl.sft_batch import right_padded
from echorl_verl.smollm2 import default_dir, paths
from echorl_verl.smollm2.task import SHOTS, Problem, messages, sample_problems, worked_solution

# Bump when the output changes for the same settings (data draw, loss, precision, saved files).
WARMUP_VERSION = 1
MANIFEST = "manifest.json"
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


class WarmupError(ValueError):
    """Bad settings or a missing input; the message is one line that names the fix."""


@dataclass(frozen=True)
class WarmupSettings:
    """Everything the warm model depends on (besides the converted base model, which the hash also covers)."""
    steps: int = 40  # docs/study/smollm2_regime.md: 36% all-success, 42% mixed groups at T=0.7
    batch_size: int = 8
    lr: float = 3e-5
    lr_warmup: int = 10  # linear warm-up steps, then constant (a k-step run is the prefix of a longer one)
    operations: tuple[int, ...] = (2,)  # operations per problem; several: the batch is split evenly among them
    seed: int = 0
    data_seed: int = 0  # `echorl_verl.smollm2.data --seed`: its validation questions are never trained on
    val_size: int = 64  # `echorl_verl.smollm2.data --val_size`
    bf16: bool = True  # CPU autocast bfloat16 for the forward/backward (see the module docstring)
    shots: int = 2  # worked examples in the prompt (`echorl_verl.smollm2.data --shots`): train on what verl sends

    def __post_init__(self) -> None:
        object.__setattr__(self, "operations", tuple(self.operations))
        for key in ("steps", "batch_size", "val_size"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise WarmupError(f"warm-up {key} must be an integer >= 1, got {getattr(self, key)!r}"
                                  + ("; to start RL from the raw model, skip the warm-up (WARMUP_STEPS=0)"
                                     if key == "steps" else ""))
        if self.lr_warmup < 0 or not self.lr > 0:
            raise WarmupError(f"warm-up lr must be > 0 and lr_warmup >= 0, got lr={self.lr}, "
                              f"lr_warmup={self.lr_warmup}")
        if not self.operations or any(not isinstance(k, int) or k < 1 for k in self.operations):
            raise WarmupError(f"warm-up operations must be integers >= 1 (e.g. 2 or 2,3), got {self.operations!r}")
        if not isinstance(self.shots, int) or not 0 <= self.shots <= len(SHOTS):
            raise WarmupError(f"warm-up shots must be an integer from 0 to {len(SHOTS)}, got {self.shots!r}")
        if len(self.operations) > self.batch_size:
            raise WarmupError(f"warm-up batch_size {self.batch_size} is smaller than the number of operations "
                              f"{self.operations}: every step needs a problem of each; raise batch_size")

    def digest(self, base: dict) -> str:
        blob = json.dumps({"warmup_version": WARMUP_VERSION, "base": base, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache() -> str:
    """$ECHORL_CACHE/smollm2-warm (ECHORL_CACHE defaults to ~/.cache/echorl_verl)."""
    return os.path.join(os.path.expanduser(os.environ.get("ECHORL_CACHE", "~/.cache/echorl_verl")), "smollm2-warm")


def base_model(smollm2_dir: str) -> tuple[str, dict]:
    """(model folder, identity for the hash) of a complete conversion in `smollm2_dir`; WarmupError if none."""
    p = paths(smollm2_dir)
    try:
        with open(p["manifest"], encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        manifest = None
    if not manifest or not all(os.path.exists(os.path.join(p["model"], name)) for name in MODEL_FILES):
        raise WarmupError(f"no converted SmolLM2 in {smollm2_dir} (manifest.json and model/ missing or incomplete): "
                          f"run python -m echorl_verl.smollm2.convert --output_dir {smollm2_dir}")
    return p["model"], {"convert_version": manifest.get("convert_version"), "sha256": manifest.get("sha256")}


def excluded_questions(settings: WarmupSettings) -> frozenset[str]:
    """The validation questions of `echorl_verl.smollm2.data` (data_seed, val_size) for each trained operation count."""
    from echorl_verl.smollm2.data import make_splits

    return frozenset(info["question"] for k in settings.operations
                     for info in make_splits(1, settings.val_size, settings.data_seed, k)["val"]["extra_info"])


def step_problems(settings: WarmupSettings, step: int, exclude: frozenset[str]) -> list[Problem]:
    """The `batch_size` problems of step `step` (0-based): a function of (seed, step) only, operations in turn."""
    ops = settings.operations
    counts = [settings.batch_size // len(ops) + (i < settings.batch_size % len(ops)) for i in range(len(ops))]
    problems = []
    for k, count in zip(ops, counts):
        seed = int(hashlib.sha256(f"smollm2-warmup/{settings.seed}/{step}/{k}".encode()).hexdigest()[:12], 16)
        problems += sample_problems(seed, count, k, exclude=exclude)
    return problems


def prompt_ids(tokenizer, question: str, shots: int = 2) -> list[int]:
    """The prompt tokens verl's rollout sends: the chat template with its generation prompt, nothing added."""
    text = tokenizer.apply_chat_template(messages(question, shots), add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def response_ids(tokenizer, problem: Problem) -> list[int]:
    """The target tokens: the worked solution, then eos (`<|im_end|>`, which ends the turn and the rollout)."""
    return tokenizer(worked_solution(problem), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def make_batch(tokenizer, problems: list[Problem], shots: int = 2):
    """Right-padded (pad = eos) input_ids, attention_mask and labels [B, T] int64; labels are -100 except on the
    response tokens and their eos (at their own positions: the model shifts them)."""
    rows = []
    for p in problems:
        prompt, response = prompt_ids(tokenizer, p.question, shots), response_ids(tokenizer, p)
        rows.append((prompt + response, [-100] * len(prompt) + response))
    return right_padded(rows, tokenizer.pad_token_id)


def shared_prefix_len(ids, labels) -> int:
    """Tokens that every row shares at the start, capped before the first labelled position of any row."""
    first_label = int((labels != -100).int().argmax(dim=1).min())
    same = (ids == ids[:1]).all(dim=0).int()
    shared = int(same.cumprod(0).sum())
    return min(shared, first_label - 1)


def response_loss(model, ids, mask, labels, share_prefix: bool = True):
    """Token-mean cross-entropy (float32) of the labelled tokens. With `share_prefix`, the tokens all rows share
    are run once and their key/value cache repeated for the batch (same loss, less compute)."""
    import torch
    import torch.nn.functional as F

    shared = shared_prefix_len(ids, labels) if share_prefix else 0
    if shared > 0:
        prefix = model.model(input_ids=ids[:1, :shared], use_cache=True)
        cache = prefix.past_key_values
        cache.batch_repeat_interleave(ids.shape[0])
        hidden = model.model(input_ids=ids[:, shared:], attention_mask=mask, past_key_values=cache,
                             use_cache=True).last_hidden_state
    else:
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    targets = labels[:, shared + 1:]  # position t predicts token t + 1
    keep = targets != -100
    logits = model.lm_head(hidden[:, :-1][keep]).float()
    if not keep.any():
        return torch.zeros((), requires_grad=True)
    return F.cross_entropy(logits, targets[keep], reduction="mean")


def lr_factor(step: int, lr_warmup: int) -> float:
    """Linear warm-up over `lr_warmup` steps, then 1 (no decay: a k-step run is the prefix of a longer one)."""
    return min(1.0, (step + 1) / lr_warmup) if lr_warmup else 1.0


def train(model, tokenizer, settings: WarmupSettings, on_step=None) -> list[float]:
    """`settings.steps` AdamW steps on `model` in place; returns the losses. on_step(k, losses) runs after step k
    (1-based)."""
    import torch

    torch.manual_seed(settings.seed)
    exclude = excluded_questions(settings)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.95), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, settings.lr_warmup))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if settings.bf16 else contextlib.nullcontext()
    model.train()
    losses = []
    for step in range(settings.steps):
        ids, mask, labels = make_batch(tokenizer, step_problems(settings, step, exclude), settings.shots)
        with autocast:
            loss = response_loss(model, ids, mask, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(round(loss.item(), 5))
        if on_step is not None:
            on_step(step + 1, losses)
    model.eval()
    return losses


def read_manifest(folder: str, digest: str) -> dict | None:
    """The manifest of a complete build with this hash in `folder`, else None."""
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if manifest.get("hash") != digest:
        return None
    return manifest if all(os.path.exists(os.path.join(folder, "model", n)) for n in MODEL_FILES) else None


def _save(model, tokenizer, folder: str, manifest: dict) -> None:
    """model/ (a temporary sibling renamed into place), then manifest.json last."""
    os.makedirs(folder, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(folder, MANIFEST))
    tmp = tempfile.mkdtemp(prefix=".model.tmp-", dir=folder)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(os.path.join(folder, "model"), ignore_errors=True)
        os.rename(tmp, os.path.join(folder, "model"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_text(os.path.join(folder, MANIFEST), json.dumps(manifest, indent=2))


def warm_up(settings: WarmupSettings = WarmupSettings(), smollm2_dir: str | None = None, cache_dir: str | None = None,
            force: bool = False, snapshots: tuple[int, ...] = ()) -> dict:
    """Build (or reuse) the warm model of `settings`; returns its manifest plus "model" (its folder) and "cached".

    snapshots: shorter step counts also saved as complete builds of their own settings (the prefix property)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    smollm2_dir = os.path.abspath(os.path.expanduser(smollm2_dir or default_dir()))
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir or default_cache()))
    bad = [k for k in snapshots if not 1 <= k < settings.steps]
    if bad:
        raise WarmupError(f"snapshots {bad} must lie between 1 and steps - 1 = {settings.steps - 1}")
    base_dir, base = base_model(smollm2_dir)
    digest = settings.digest(base)
    folder = os.path.join(cache_dir, digest)
    with build_lock(folder):
        manifest = None if force else read_manifest(folder, digest)
        if manifest is not None:
            return {**manifest, "model": os.path.join(folder, "model"), "cached": True}
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, MANIFEST))
        for stale in glob.glob(os.path.join(folder, ".model.tmp-*")):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        torch.set_num_threads(2 if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" else 1)
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        t0 = time.time()

        def manifest_at(k, losses):
            s = dataclasses.replace(settings, steps=k)
            return {"hash": s.digest(base), "warmup_version": WARMUP_VERSION, "settings": dataclasses.asdict(s),
                    "base": {**base, "model": base_dir}, "losses": losses[:k],
                    "sft_seconds": round(time.time() - t0, 1), "threads": torch.get_num_threads()}

        def on_step(k, losses):
            if k in snapshots:
                m = manifest_at(k, losses)
                snap = os.path.join(cache_dir, m["hash"])
                with build_lock(snap):
                    _save(model, tokenizer, snap, m)
                print(f"[warmup] step {k}: loss {losses[-1]:.4f}, snapshot {snap}", file=sys.stderr, flush=True)
            elif k % 10 == 0:
                print(f"[warmup] step {k}: loss {losses[-1]:.4f} ({time.time() - t0:.0f} s)", file=sys.stderr,
                      flush=True)

        losses = train(model, tokenizer, settings, on_step)
        manifest = manifest_at(settings.steps, losses)
        _save(model, tokenizer, folder, manifest)
        return {**manifest, "model": os.path.join(folder, "model"), "cached": False}


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def main(argv=None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see echorl_verl.toy.build)
    d = WarmupSettings()
    ap = argparse.ArgumentParser(prog="python -m echorl_verl.smollm2.warmup", description=__doc__.split("\n\n")[0])
    ap.add_argument("--smollm2_dir", default=None, help=f"the converted model's build folder (default {default_dir()})")
    ap.add_argument("--cache_dir", default=None, help=f"where warm builds live (default {default_cache()})")
    for f in dataclasses.fields(WarmupSettings):
        kind = _ints if f.name == "operations" else (lambda v: v.lower() in ("1", "true", "yes")) if f.type == "bool" \
            else type(getattr(d, f.name))
        ap.add_argument(f"--{f.name}", type=kind, default=getattr(d, f.name), help=f"default {getattr(d, f.name)}")
    ap.add_argument("--snapshots", type=_ints, default=(), help="also save these shorter step counts (e.g. 40,80)")
    ap.add_argument("--force", action="store_true", help="train again even when a complete build exists")
    ap.add_argument("--print_model_path", action="store_true", help="print only the warm model's folder")
    args = ap.parse_args(argv)
    try:
        settings = WarmupSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(WarmupSettings)})
        report = warm_up(settings, args.smollm2_dir, args.cache_dir, args.force, args.snapshots)
    except WarmupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_model_path:
        print(report["model"])
    else:
        print(json.dumps({k: v for k, v in report.items() if k != "losses"} | {
            "loss_first_last": [report["losses"][0], report["losses"][-1]]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
