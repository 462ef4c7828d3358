"""Seeded studies: arms x seeds of real training runs, and what they show with intervals.

    python -m echorl_verl.study run STUDY.yaml [--study-dir DIR] [--finished-in COMPACT_DIR]
                                                                      # every (arm, seed), skips finished runs
    python -m echorl_verl.study report STUDY_DIR --out DIR            # report.md + PNGs
    python -m echorl_verl.study export STUDY_DIR --out COMPACT_DIR    # the small per-run results to commit

Modules: spec (STUDY.yaml), run (the harness), results (reading and checking a study folder), configs
(do arms differ only where they say), stats (intervals, paired differences, areas), report, export.
"""
