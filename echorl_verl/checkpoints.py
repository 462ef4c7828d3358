"""Checkpoint retention that holds for a run folder, also across the attempts of a resumed run.

verl 0.9.1 keeps `trainer.max_actor_ckpt_to_keep` checkpoints through a list held by the actor's checkpoint
manager (verl/utils/checkpoint/checkpoint_manager.py `ensure_checkpoint_capacity`, `register_checkpoint`),
which falls short twice:
- the list starts empty in every process, so a resumed run never removes what an earlier attempt saved
  (a run killed after step 2 and resumed to step 4, keeping 2, ended with global_step_1..4);
- it removes the path the worker saved, `global_step_N/actor`, so every `global_step_N/` folder stays with the
  trainer's `data.pt` in it.
After each save `EchoPPOTrainer._save_checkpoint` calls `prune`, which counts the folders on disk instead.
"""

from __future__ import annotations

import os
import re
import shutil

STEP_FOLDER = re.compile(r"^global_step_(\d+)$")


def prune(checkpoint_dir: str, current_step: int, keep: int | None) -> list[str]:
    """Remove whole `global_step_N` folders of `checkpoint_dir` with N < current_step but the newest keep - 1, so
    that with the checkpoint just saved `keep` remain. Folders of later steps (a resumed run saves them again)
    are left alone; keep None or < 1 keeps everything, as in verl. Returns the removed paths."""
    if not keep or keep < 1 or not os.path.isdir(checkpoint_dir):
        return []
    older = sorted(int(m[1]) for name in os.listdir(checkpoint_dir)
                   if (m := STEP_FOLDER.match(name)) and int(m[1]) < current_step)
    removed = []
    for step in older[: max(len(older) - (keep - 1), 0)]:
        path = os.path.join(checkpoint_dir, f"global_step_{step}")
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
