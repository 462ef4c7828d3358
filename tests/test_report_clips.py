"""The EchoClip viewer (`python -m echorl_verl.report clips`): pages built from rollout dumps written by verl's
own dump writer (`PPOTrainer._write_generations`, as the trainer calls it) with clip facts from the real
select_echo_clips + clip_facts on toy-tokenizer responses; bad folders; and a headless Chromium render."""

import html.parser
import json
import os
import shutil
import subprocess

import pytest
from clip_testlib import facts_of

from echorl_verl.config import EchoConfig
from echorl_verl.report import clips as viewer
from echorl_verl.report.__main__ import main
from echorl_verl.report.runlog import ReportError
from echorl_verl.toy.tokenizer import EOS, build_tokenizer

EVIL = '<script>alert("x")</script> & "q"'
# (response lines, per-line entropy, success, group): groups 0 and 2 all-success, group 1 mixed
ROWS = [
    (["1+2=3 write 3\n", "4+5=9 write 9\n", "answer: 93" + EOS], [0.5, 2.0, 1.0], True, 0),
    (["7+1=8 write 8\n", EVIL + "\n", "answer: 8" + EOS], [1.0, 3.0, 0.2], True, 0),
    (["2+2=4 write 4\n", "answer: 5" + EOS], [1.0, 1.0], False, 1),
    (["9+9=18 write 8 carry 1\n", "answer: 18" + EOS], [1.0, 2.5], True, 1),
    (["3+3=6 write 6\n", "answer: 6" + EOS], [1.5, 0.7], True, 2),
]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def write_dump(folder, step, tok, rows=ROWS, facts=True, config=EchoConfig()):
    """One `{step}.jsonl` exactly as verl's v1 trainer writes it, plus our `echo` key (what trainer.py adds)."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    _, records, _, _ = facts_of(tok, rows, config)
    keys = [f"prompt{g}-{step}_{i}_0" for i, (*_, g) in enumerate(rows)]
    extra = {"uid": keys, **({"echo": records} if facts else {})}
    PPOTrainer._write_generations(
        inputs=[f"user\nprompt {g}{EVIL}\nassistant\n" for *_, g in rows], outputs=["".join(r[0]) for r in rows],
        gts=["42"] * len(rows), scores=[float(r[2]) for r in rows], reward_extra_infos_dict=extra,
        dump_path=str(folder), global_steps=step,
    )
    return keys, records


@pytest.fixture(params=["peak_prefix", "full_response", "peak_step"])
def run_dir(tmp_path, tok, request):
    """A run folder with three dumped steps, clips of one clip mode (the clip end, start and peak differ)."""
    for step in (1, 2, 3):
        write_dump(tmp_path / "rollouts", step, tok, config=EchoConfig(clip_mode=request.param))
    tmp_path.joinpath("mode").write_text(request.param)
    return tmp_path


class Rows(html.parser.HTMLParser):
    """Collects, per rollout card, its uid and the step number of the rows marked peak / end / clip."""

    def __init__(self):
        super().__init__()
        self.cards, self._row, self._cell, self._in_b = [], None, 0, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and a.get("class") == "card":
            self.cards.append({"uid": None, "peak": [], "end": [], "clip": []})
        elif tag == "b" and self.cards and self.cards[-1]["uid"] is None:
            self._in_b = True
        elif tag == "tr":
            self._row, self._cell = (a.get("class") or "").split(), 0
        elif tag == "td":
            self._cell += 1

    def handle_data(self, data):
        if self._in_b:
            self.cards[-1]["uid"], self._in_b = data, False
        elif self._row is not None and self._cell == 1 and data.strip().isdigit():
            for mark in self._row:
                self.cards[-1][mark].append(int(data))
            self._row = None


def parse(page):
    p = Rows()
    p.feed(page)
    return p.cards


def test_page_shows_every_all_success_rollout_with_its_clip(run_dir, tok):
    out = run_dir / "clips.html"
    page_path, png_path = viewer.write_viewer(str(run_dir), str(out), steps=[1, 3], per_step=10)
    page = out.read_text(encoding="utf-8")
    cards = parse(page)
    mode = (run_dir / "mode").read_text()
    _, records = write_dump(run_dir / "other", 1, tok, config=EchoConfig(clip_mode=mode))  # the same facts
    expected = [i for i, r in enumerate(records) if r["group_all_success"]]
    assert [c["uid"] for c in cards] == [f"prompt{ROWS[i][3]}-{s}_{i}_0" for s in (1, 3) for i in expected]
    for card, i in zip(cards, expected * 2):
        rec = records[i]
        assert card["peak"] == [rec["peak_step"]] and card["end"] == [rec["clip_step"]]
        assert card["clip"] == list(range(rec["clip_first_step"], rec["clip_step"] + 1))
    by_hand = {"peak_prefix": ([1], [1], [0, 1]), "full_response": ([1], [2], [0, 1, 2]), "peak_step": ([1], [1], [1])}
    assert (cards[0]["peak"], cards[0]["end"], cards[0]["clip"]) == by_hand[mode]  # row 0 (entropies 0.5, 2, 1)
    assert records[1]["peak_step"] == 1  # the row with the injected text peaks there
    assert f"clip ends at token {records[1]['clip_end_tokens']}" in page and "3 of its 3 all-success" in page
    assert open(png_path, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and page_path == str(out)


def test_untrusted_text_is_escaped_and_the_page_loads_nothing(run_dir):
    out = run_dir / "clips.html"
    viewer.write_viewer(str(run_dir), str(out), per_step=10)
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;q&quot;" in page
    assert "&lt;|im_end|&gt;" in page  # special tokens are shown, as text
    assert "http://" not in page and "https://" not in page and "src=" not in page
    assert "default-src 'none'" in page


def test_sampling_is_seeded_prefers_distinct_prompts_and_defaults_to_first_middle_last(run_dir):
    dumps = viewer.find_dumps(str(run_dir))
    assert list(dumps) == [1, 2, 3] and viewer.default_steps(list(dumps)) == [1, 2, 3]
    a, total = viewer.sample_rollouts(dumps, [2], per_step=2, seed=5)[2]
    assert total == 3 and (a, 3) == viewer.sample_rollouts(dumps, [2], per_step=2, seed=5)[2]
    assert {r["uid"].split("-")[0] for r in a} == {"prompt0", "prompt2"}  # two prompts before a second draw
    draws = {tuple(r["uid"] for r in viewer.sample_rollouts(dumps, [2], 1, seed)[2][0]) for seed in range(20)}
    assert len(draws) == 3  # every all-success rollout can be drawn


def test_a_step_without_all_success_rollouts_says_so(tmp_path, tok):
    write_dump(tmp_path / "rollouts", 4, tok, rows=[ROWS[2], ROWS[3]])  # the mixed group only
    viewer.write_viewer(str(tmp_path), str(tmp_path / "c.html"))
    assert "no all-success rollout at this step" in (tmp_path / "c.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("case, words", [
    ("missing", "no such folder"),
    ("empty", "trainer.rollout_data_dir"),
    ("no_facts", "no clip facts"),
    ("bad_json", "4.jsonl:2"),
    ("bad_step", "dumped steps: 4"),
])
def test_bad_run_folders_are_named_with_the_fix(tmp_path, tok, case, words):
    folder = tmp_path / "rollouts"
    folder.mkdir()
    steps = None
    if case == "no_facts":
        write_dump(folder, 4, tok, facts=False)
    elif case == "bad_json":
        write_dump(folder, 4, tok)
        lines = (folder / "4.jsonl").read_text().splitlines()
        (folder / "4.jsonl").write_text(lines[0] + "\n" + lines[1][:30] + "\n")
    elif case == "bad_step":
        write_dump(folder, 4, tok)
        steps = [5]
    target = tmp_path / "nowhere" if case == "missing" else tmp_path
    with pytest.raises(ReportError, match=words):
        viewer.write_viewer(str(target), str(tmp_path / "c.html"), steps=steps)
    assert not (tmp_path / "c.html").exists() and not (tmp_path / "c.png").exists()


def test_the_rollout_folder_itself_and_the_cli(run_dir, capsys):
    out = run_dir / "v" / "page.html"
    assert main(["clips", str(run_dir / "rollouts"), "--out", str(out), "--steps", "2,1", "--per-step", "1"]) == 0
    assert out.exists() and (run_dir / "v" / "page.png").exists()
    assert [c["uid"].split("_")[0].split("-")[1] for c in parse(out.read_text(encoding="utf-8"))] == ["1", "2"]
    assert main(["clips", str(run_dir / "nothing"), "--out", str(out)]) == 2
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["clips", str(run_dir), "--out", str(out), "--steps", "1,x"])


def test_a_failing_png_leaves_no_page(run_dir, monkeypatch):
    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(viewer, "render_png", broken)
    with pytest.raises(RuntimeError):
        viewer.write_viewer(str(run_dir), str(run_dir / "c.html"))
    assert sorted(os.listdir(run_dir)) == ["mode", "rollouts"]


# ----------------------------------------------------------------------------- a real browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def render(path, tmp_path):
    """(DOM after load, browser console lines) of a page in headless Chromium."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--dump-dom"]
    done = subprocess.run([CHROMIUM, *flags, f"file://{path}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install -y chromium) for the browser check")
def test_page_renders_in_headless_chromium_without_console_errors(run_dir, tmp_path):
    bad = tmp_path / "bad.html"  # the check can fail: a page with a script error is caught
    bad.write_text('<!DOCTYPE html><p>x</p><script>throw new Error("boom")</script>')
    assert any("Uncaught Error: boom" in line for line in render(bad, tmp_path)[1])

    out = run_dir / "clips.html"
    viewer.write_viewer(str(run_dir), str(out), per_step=10)
    dom, console = render(out, tmp_path)
    assert console == []  # no script error, no blocked script or resource
    assert len(parse(dom)) == 9 and "clip ends at token" in dom and "<script" not in dom.split("<style>")[0]


def test_dump_lines_are_verls_plus_echo(run_dir):
    line = json.loads((run_dir / "rollouts" / "1.jsonl").read_text().splitlines()[0])
    assert set(line) == {"input", "output", "gts", "score", "step", "uid", "echo"}
