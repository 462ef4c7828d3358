"""`python -m echorl_verl.tools.extend_context SRC DST --max_positions 16384 --rope_theta 40000`

Qwen2.5-Math-7B's config.json allows 4096 positions. verl gives vLLM exactly that context when
`rollout.max_model_len` is null and clamps each request's `max_tokens` to fit, so with 8192-token responses
every response would be cut at about 3-4k tokens without a word (the start-up check refuses such runs).
`model.override_config` does not help: vLLM serves the folder's own config.json. LUFFY, whose code the
EchoRL authors forked, trained a copy with `rope_theta` 40000 and 16384 positions (published as
`Elliott/Qwen2.5-Math-7B-16k-think`); this tool writes such a copy of any local or hub model:
config.json (and tokenizer_config.json's `model_max_length`) edited, every other file linked (default) or
copied. DST appears whole or not at all.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

LARGE_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


class ExtendContextError(RuntimeError):
    """SRC or DST cannot be used; the message says which and why."""


def resolve_source(src: str) -> str:
    """A local model folder, or a hub id downloaded (or found in the cache) by huggingface_hub."""
    if os.path.isdir(os.path.expanduser(src)):
        return os.path.abspath(os.path.expanduser(src))
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(src)
    except Exception as err:  # noqa: BLE001  (network, auth, unknown id)
        raise ExtendContextError(f"SRC {src!r} is not a local folder and could not be downloaded: {err}") from err


def patched_config(config: dict, max_positions: int, rope_theta: float | None) -> dict:
    """config.json with more positions (and a new rope base); `rope_parameters` too where transformers 5 writes it."""
    out = dict(config)
    out["max_position_embeddings"] = int(max_positions)
    if rope_theta is not None:
        out["rope_theta"] = float(rope_theta)
        if isinstance(out.get("rope_parameters"), dict):
            out["rope_parameters"] = dict(out["rope_parameters"], rope_theta=float(rope_theta))
    return out


def extend_context(src: str, dst: str, max_positions: int, rope_theta: float | None, copy: bool = False,
                   force: bool = False) -> str:
    source = resolve_source(src)
    config_path = os.path.join(source, "config.json")
    if not os.path.isfile(config_path):
        raise ExtendContextError(f"SRC {src!r} has no config.json: not a Hugging Face model folder")
    dst = os.path.abspath(os.path.expanduser(dst))
    if os.path.exists(dst) and not force:
        raise ExtendContextError(f"DST {dst} exists; remove it or pass --force")
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    old = config.get("max_position_embeddings")
    if old is not None and int(old) >= max_positions and rope_theta is None:
        raise ExtendContextError(f"{src} already has {old} positions (>= {max_positions}); nothing to extend")

    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.", dir=parent)
    try:
        for name in sorted(os.listdir(source)):
            path = os.path.realpath(os.path.join(source, name))
            target = os.path.join(tmp, name)
            if name == "config.json" or os.path.isdir(path):
                continue
            if name.endswith(LARGE_SUFFIXES) and not copy:
                os.symlink(path, target)
            else:
                shutil.copy2(path, target)
        with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as handle:
            json.dump(patched_config(config, max_positions, rope_theta), handle, indent=2)
        tok = os.path.join(tmp, "tokenizer_config.json")
        if os.path.isfile(tok):
            with open(tok, encoding="utf-8") as handle:
                tok_config = json.load(handle)
            if isinstance(tok_config.get("model_max_length"), int) and tok_config["model_max_length"] < max_positions:
                tok_config["model_max_length"] = int(max_positions)
                with open(tok, "w", encoding="utf-8") as handle:
                    json.dump(tok_config, handle, indent=2)
        if os.path.exists(dst):
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m echorl_verl.tools.extend_context", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="model folder or hub id (e.g. Qwen/Qwen2.5-Math-7B)")
    parser.add_argument("dst", help="folder to write (must not exist unless --force)")
    parser.add_argument("--max_positions", type=int, default=16384, help="new max_position_embeddings (default 16384)")
    parser.add_argument("--rope_theta", type=float, default=None, help="new rope_theta (LUFFY: 40000); default: unchanged")
    parser.add_argument("--copy", action="store_true", help="copy the weight files instead of linking them")
    parser.add_argument("--force", action="store_true", help="replace DST if it exists")
    args = parser.parse_args(argv)
    if args.max_positions < 1:
        parser.error("--max_positions must be >= 1")
    try:
        dst = extend_context(args.src, args.dst, args.max_positions, args.rope_theta, args.copy, args.force)
    except ExtendContextError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {dst} (max_position_embeddings={args.max_positions}"
          + (f", rope_theta={args.rope_theta:g}" if args.rope_theta is not None else "") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
