"""Every committed study report is what `study report` makes of the committed runs beside it, byte for byte.

The docs quote these reports; a change to the report's code that leaves one stale fails here, with the command
that brings it up to date. (The PNGs are drawn but not compared: only the text is quoted.)
"""

from __future__ import annotations

import glob
import os

import pytest

from echorl_verl.study.report import build_report
from echorl_verl.study.results import load_study_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORTS = sorted(p for p in glob.glob(os.path.join(ROOT, "docs", "**", "report.md"), recursive=True)
                 if os.path.isfile(os.path.join(os.path.dirname(p), "runs", "study.yaml")))


def test_the_committed_studies_are_found():
    assert {os.path.relpath(os.path.dirname(p), ROOT) for p in REPORTS} >= {
        "docs/study/build2", "docs/study/build2/tuning", "docs/study/smollm2", "docs/study/smollm2_tuning",
        "docs/study/toy"}


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: os.path.relpath(os.path.dirname(p), ROOT))
def test_a_committed_report_reproduces_from_its_runs(path):
    import matplotlib.pyplot as plt

    folder = os.path.relpath(os.path.dirname(path), ROOT)
    try:
        text, _ = build_report(load_study_dir(os.path.join(os.path.dirname(path), "runs")))
    finally:
        plt.close("all")
    with open(path, encoding="utf-8") as fh:
        committed = fh.read()
    assert text == committed, (f"{folder}/report.md is stale: run `python -m echorl_verl.study report "
                               f"{folder}/runs --out {folder}` and commit it")
