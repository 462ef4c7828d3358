"""`report clips`: the EchoClip viewer, a self-contained HTML page and a PNG of sampled all-success rollouts.

    python -m echorl_verl.report clips RUN_DIR --out clips.html [--png clips.png] [--steps 1,5,10]
                                      [--per-step 4] [--seed 0]

Reads the rollout dump of a run (verl's `trainer.rollout_data_dir`, `RUN_DIR/rollouts/<step>.jsonl` in the
recipes): one JSON line per rollout with verl's keys (`input`, `output`, `gts`, `score`, `step`, `uid`) and
EchoRL's clip facts under `echo` (`echorl_verl/clip_facts.py` documents the record). From each chosen
step it draws `--per-step` rollouts of all-success groups (seeded) and shows each one's steps, shaded by
step entropy on one colour scale for the page, with the peak step outlined and the clip's steps and end
marked. Model output is untrusted: every text is HTML-escaped, and the page forbids scripts and any
outside resource (Content-Security-Policy), so it also opens offline.
"""

from __future__ import annotations

import glob
import html
import json
import os
import random
import sys

from echorl_verl import atomic
from echorl_verl.clip_facts import FACTS_VERSION
from echorl_verl.report.runlog import ReportError

CMAP = "YlOrRd"  # step entropy: light = low, dark red = high
DUMP_SETTING = "trainer.rollout_data_dir=RUN_DIR/rollouts"


# ----------------------------------------------------------------------------- reading the dump
def find_dumps(run_dir: str) -> dict[int, str]:
    """{step: path} of the dump files in RUN_DIR/rollouts (or in RUN_DIR itself, if it is that folder)."""
    if not os.path.isdir(run_dir):
        raise ReportError(f"{run_dir}: no such folder. Pass the run folder (RUN_DIR) of a training run")
    for folder in (os.path.join(run_dir, "rollouts"), run_dir):
        paths = {int(os.path.basename(p)[: -len(".jsonl")]): p for p in glob.glob(os.path.join(folder, "*.jsonl"))
                 if os.path.basename(p)[: -len(".jsonl")].isdigit()}
        if paths:
            return dict(sorted(paths.items()))
    raise ReportError(
        f"{run_dir}: no rollout dump (<step>.jsonl) in {os.path.join(run_dir, 'rollouts')} or in the folder itself. "
        f"Train with {DUMP_SETTING} (the CPU recipes set it) to dump each step's rollouts"
    )


def load_dump(path: str) -> list[dict]:
    """The rollouts of one dump file; every line must carry clip facts (key `echo`).

    A last line without its newline that is not JSON is what a kill leaves while verl writes the dump (after the
    step's checkpoint, so no later attempt writes that step again): it is left out, with a warning that counts
    the rollouts read."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        lines = fh.readlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if n == len(lines) and not line.endswith("\n"):
                print(f"[report] warning: {path}:{n}: last line is cut off (the run was killed while writing "
                      f"it): left out, {len(rows)} rollouts read", file=sys.stderr)
                break
            raise ReportError(f"{path}:{n}: not a JSON line ({err}); is the file cut off?") from err
        facts = row.get("echo") if isinstance(row, dict) else None
        if not isinstance(facts, dict):
            raise ReportError(
                f"{path}:{n}: no clip facts (key 'echo'). The dump was written without EchoRL: train through "
                f"`python -m echorl_verl.main_ppo` with echo.enable=true and {DUMP_SETTING}"
            )
        if facts.get("version") != FACTS_VERSION:
            raise ReportError(f"{path}:{n}: clip facts version {facts.get('version')!r}; this viewer reads "
                              f"version {FACTS_VERSION}")
        rows.append(row)
    return rows


def sample_rollouts(dumps: dict[int, str], steps: list[int], per_step: int, seed: int
                    ) -> dict[int, tuple[list[dict], int]]:
    """{step: (up to per_step all-success rollouts in dump order, how many it had)}, by random.Random(seed)."""
    missing = [s for s in steps if s not in dumps]
    if missing:
        raise ReportError(f"steps {missing} have no dump file; dumped steps: {_ranges(list(dumps))}")
    rng = random.Random(seed)
    chosen = {}
    for step in steps:
        rows = load_dump(dumps[step])
        pool = [i for i, r in enumerate(rows) if r["echo"]["group_all_success"] and r["echo"]["eligible"]]
        rng.shuffle(pool)
        chosen[step] = [rows[i] for i in sorted(_distinct_prompts_first(pool, rows)[:per_step])], len(pool)
    return chosen


def _distinct_prompts_first(pool: list[int], rows: list[dict]) -> list[int]:
    """`pool` reordered so that each prompt's k-th rollout comes after every prompt's (k-1)-th (stable)."""
    seen: dict[str, int] = {}
    rank = {}
    for i in pool:
        prompt = _prompt(rows[i])
        rank[i] = seen.get(prompt, 0)
        seen[prompt] = rank[i] + 1
    return sorted(pool, key=rank.__getitem__)


def _prompt(row: dict) -> str:
    """The prompt uid of a rollout: verl's dump key is `{prompt uid}_{session}_{index}`; else its input."""
    parts = str(row.get("uid", "")).rsplit("_", 2)
    return parts[0] if len(parts) == 3 else str(row.get("input"))


def default_steps(available: list[int]) -> list[int]:
    """First, middle and last dumped step."""
    return sorted({available[0], available[len(available) // 2], available[-1]})


def _ranges(values: list[int]) -> str:
    return ", ".join(map(str, values)) if len(values) <= 12 else f"{values[0]} .. {values[-1]} ({len(values)} files)"


# ----------------------------------------------------------------------------- colours
def entropy_scale(chosen: dict[int, tuple[list[dict], int]]) -> tuple[float, float]:
    """(low, high) of the finite step entropies on the page (one scale for every rollout)."""
    values = [s["entropy"] for rows, _ in chosen.values() for r in rows for s in r["echo"]["steps"]
              if s["entropy"] is not None]
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    return lo, hi if hi > lo else lo + 1.0


def _colour(value, scale) -> tuple[str, str]:
    """(background, text colour) of a step entropy; grey for a missing (non-finite) one."""
    if value is None:
        return "#d9d9d9", "#000"
    import matplotlib

    r, g, b, _ = matplotlib.colormaps[CMAP]((value - scale[0]) / (scale[1] - scale[0]))
    text = "#fff" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "#000"
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}", text


# ----------------------------------------------------------------------------- HTML
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1300px; }
h1 { font-size: 20px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ccc; }
.legend { display: flex; gap: 28px; align-items: center; flex-wrap: wrap; margin: 8px 0 16px; }
.bar { width: 260px; height: 14px; border: 1px solid #888; }
.ticks { display: flex; justify-content: space-between; width: 262px; font-size: 12px; }
.card { border: 1px solid #bbb; border-radius: 6px; margin: 14px 0; padding: 10px 12px; background: #fafafa; }
.meta { font-size: 13px; color: #444; margin-bottom: 6px; }
.meta b { color: #000; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0; font: 13px/1.35 ui-monospace, monospace; }
.prompt { background: #eef; padding: 6px; border-radius: 4px; max-height: 9em; overflow: auto; margin-bottom: 8px; }
table { border-collapse: collapse; width: 100%; }
td { vertical-align: top; padding: 1px 6px; font: 12px ui-monospace, monospace; }
td.num { text-align: right; color: #555; white-space: nowrap; width: 1%; }
td.tag { width: 190px; }
td.text { border-left: 6px solid transparent; }
tr.clip td.text { border-left-color: #2b8cbe; }
tr.peak td.text { outline: 3px solid #000; outline-offset: -3px; }
tr.end td { border-bottom: 3px dashed #2b8cbe; }
.endtag { color: #2b8cbe; font-weight: bold; white-space: nowrap; }
.nl { opacity: 0.55; }
.swatch { display: inline-block; width: 18px; height: 12px; vertical-align: middle; margin-right: 4px; }
.none { color: #777; font-style: italic; }
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'"  # no script, no outside resource


def _text(s: str) -> str:
    """Escaped step text, its line ending drawn as a faint return sign."""
    body = s[:-1] if s.endswith("\n") else s
    return html.escape(body) + ('<span class="nl">\u21b5</span>' if s.endswith("\n") else "")


def _legend(scale) -> str:
    import matplotlib

    cmap = matplotlib.colormaps[CMAP]
    stops = ", ".join(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
                      for r, g, b, _ in (cmap(i / 8) for i in range(9)))
    return (
        '<div class="legend"><div>step entropy<div class="bar" style="background: linear-gradient(to right, '
        f'{stops})"></div><div class="ticks"><span>{scale[0]:.3g}</span><span>{(scale[0] + scale[1]) / 2:.3g}</span>'
        f'<span>{scale[1]:.3g}</span></div></div>'
        '<div><span class="swatch" style="outline: 3px solid #000; outline-offset: -3px"></span>peak step</div>'
        '<div><span class="swatch" style="background: #2b8cbe"></span>in the EchoClip</div>'
        '<div><span class="swatch" style="border-bottom: 3px dashed #2b8cbe"></span>clip end</div>'
        '<div><span class="swatch" style="background: #d9d9d9"></span>entropy nan/inf</div></div>'
    )


def _card(row: dict, scale) -> str:
    e = row["echo"]
    first, last = e.get("clip_first_step"), e.get("clip_step")
    lines = []
    for k, s in enumerate(e["steps"]):
        classes = [c for c, on in (("clip", e["selected"] and first <= k <= last), ("peak", k == e["peak_step"]),
                                   ("end", k == last)) if on]
        bg, fg = _colour(s["entropy"], scale)
        ent = "nan" if s["entropy"] is None else f"{s['entropy']:.3f}"
        tag = f'<span class="endtag">\u25c0 clip ends at token {e["clip_end_tokens"]}</span>' if k == last else ""
        lines.append(f'<tr class="{" ".join(classes)}"><td class="num">{k}</td><td class="num">{ent}</td>'
                     f'<td class="num">{s["tokens"]}</td><td class="text" style="background: {bg}; color: {fg}">'
                     f'<pre>{_text(s["text"])}</pre></td><td class="tag">{tag}</td></tr>')
    clip = (f'clip: <b>{e["clip_len"]}</b> tokens, steps {first}..{last}, peak step <b>{e["peak_step"]}</b>'
            if e["selected"] else f'no clip: <b>{html.escape(str(e["status"]))}</b>')
    return (
        f'<div class="card"><div class="meta">uid <b>{html.escape(str(row.get("uid", "?")))}</b> &middot; score '
        f'<b>{html.escape(str(row.get("score")))}</b> &middot; answer <b>{html.escape(str(row.get("gts")))}</b> '
        f'&middot; {e["response_tokens"]} tokens in {len(e["steps"])} steps &middot; {clip}</div>'
        f'<pre class="prompt">{html.escape(str(row.get("input", "")))}</pre>'
        '<table><tr><td class="num">step</td><td class="num">entropy</td><td class="num">tokens</td><td></td>'
        f'<td></td></tr>{"".join(lines)}</table></div>'
    )


def render_html(chosen: dict[int, tuple[list[dict], int]], title: str) -> str:
    """The page: a legend, then per step its sampled rollouts (or a note that it has none)."""
    scale = entropy_scale(chosen)
    sections = []
    for step, (rows, total) in chosen.items():
        cards = "".join(_card(r, scale) for r in rows) or '<p class="none">no all-success rollout at this step</p>'
        sections.append(f"<h2>step {step} &middot; {len(rows)} of its {total} all-success rollouts</h2>{cards}")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" '
        f'content="{CSP}"><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>'
        f"<h1>{html.escape(title)}</h1>{_legend(scale)}{''.join(sections)}</body></html>"
    )


# ----------------------------------------------------------------------------- PNG
def render_png(chosen: dict[int, tuple[list[dict], int]], path: str, title: str) -> None:
    """One panel per rollout: a bar per step (length and colour = step entropy), peak outlined, clip end dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.lines
    import matplotlib.patches
    import matplotlib.pyplot as plt

    rows = [(step, r) for step, (rs, _) in chosen.items() for r in rs]
    scale = entropy_scale(chosen)
    cmap, ncols = matplotlib.colormaps[CMAP], 3
    nrows = max(1, -(-len(rows) // ncols))
    height = max(3.0, max((len(r["echo"]["steps"]) for _, r in rows), default=1) * 0.28 + 1.2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols + 1.5, height * nrows + 0.8), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    for ax, (step, row) in zip(axes.flat, rows):
        _panel(ax, step, row, scale, cmap)
    if not rows:
        axes.flat[0].text(0.5, 0.5, "no all-success rollout at the chosen steps", ha="center")
    sm = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(*scale), cmap=cmap)
    fig.colorbar(sm, ax=axes, shrink=0.8, label="step entropy (bar colour and length)")
    handles = [matplotlib.patches.Patch(facecolor="white", edgecolor="black", linewidth=2, label="peak step"),
               matplotlib.patches.Patch(facecolor="#2b8cbe", alpha=0.25, label="EchoClip steps"),
               matplotlib.lines.Line2D([], [], color="#2b8cbe", linestyle="--", linewidth=2, label="clip end")]
    fig.legend(handles=handles, loc="outside upper right", ncols=3, fontsize=8)
    fig.suptitle(_plain(title))
    try:
        fig.savefig(path, format="png", dpi=110)
    finally:
        plt.close(fig)


def _panel(ax, step: int, row: dict, scale, cmap) -> None:
    e = row["echo"]
    steps = e["steps"]
    ys = range(len(steps))
    values = [s["entropy"] if s["entropy"] is not None else 0.0 for s in steps]
    colours = [cmap((v - scale[0]) / (scale[1] - scale[0])) if s["entropy"] is not None else "#d9d9d9"
               for v, s in zip(values, steps)]
    edges = ["black" if k == e["peak_step"] else "none" for k in ys]
    ax.barh(list(ys), values, color=colours, edgecolor=edges, linewidth=2)
    for k, s in zip(ys, steps):
        ax.text(scale[1] * 0.01, k, _plain(s["text"].rstrip("\n"))[:60], va="center", fontsize=7, family="monospace")
    if e["selected"]:
        ax.axhline(e["clip_step"] + 0.5, color="#2b8cbe", linestyle="--", linewidth=2)
        ax.axhspan(e["clip_first_step"] - 0.5, e["clip_step"] + 0.5, color="#2b8cbe", alpha=0.08)
    ax.set_ylim(len(steps) - 0.5, -0.5)
    ax.set_xlim(0, scale[1] * 1.05)
    ax.set_yticks(list(ys))
    ax.tick_params(labelsize=7)
    clip = f"clip {e['clip_len']} tok, peak step {e['peak_step']}" if e["selected"] else f"no clip ({e['status']})"
    ax.set_title(_plain(f"step {step} · {_short(str(row.get('uid', '?')))} · score {row.get('score')}\n{clip}"),
                 fontsize=8)
    ax.set_xlabel("step entropy", fontsize=7)


def _short(uid: str) -> str:
    """`4f536509-...-2503520a617a_6_0` -> `4f536509…_6_0` (a panel title has little room)."""
    head, sep, tail = uid.partition("_")
    return f"{head[:8]}…{sep}{tail}" if len(head) > 12 else uid


def _plain(s: str) -> str:
    """Text for matplotlib: '$' would start mathtext."""
    return str(s).replace("$", r"\$")


# ----------------------------------------------------------------------------- the command
def write_viewer(run_dir: str, out: str, png: str | None = None, steps: list[int] | None = None,
                 per_step: int = 4, seed: int = 0) -> tuple[str, str]:
    """Write the HTML page and the PNG (default: `out` with .png) together; return their paths."""
    if per_step < 1:
        raise ReportError(f"--per-step {per_step}: show at least 1 rollout per step")
    dumps = find_dumps(run_dir)
    chosen = sample_rollouts(dumps, steps or default_steps(list(dumps)), per_step, seed)
    png = png or os.path.splitext(out)[0] + ".png"
    title = f"EchoClips of {os.path.basename(os.path.abspath(run_dir))} (seed {seed})"
    page = render_html(chosen, title)

    def write_page(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(page)

    atomic.write_all({out: write_page, png: lambda tmp: render_png(chosen, tmp, title)})
    return out, png


def parse_steps(value: str) -> list[int]:
    """`1,5,10` -> [1, 5, 10] (argparse type)."""
    import argparse

    try:
        steps = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give step numbers separated by commas, e.g. 1,5,10") from None
    if not steps:
        raise argparse.ArgumentTypeError(f"{value!r}: give at least one step number")
    return sorted(set(steps))
