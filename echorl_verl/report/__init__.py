"""Tables and curves from EchoRL runs' metrics (verl's `file` logger JSONL).

    python -m echorl_verl.report summary runs/grpo_echo_qwen            # a run folder: every attempt
    python -m echorl_verl.report table runs/*_qwen --out table.md --csv table.csv [--step last|best|N]
    python -m echorl_verl.report plot runs/grpo_echo_qwen runs/grpo_baseline_qwen --out plots/
    python -m echorl_verl.report next-metrics-path RUN_DIR               # for the recipes: the next attempt's file

Modules: attempts (one metrics file per attempt of a run), runlog (reading, merging attempts, errors),
validation (verl's val-core names -> accuracy, pass@k), suite (benchmarks), summary, table, plot,
markdown (table text). Output files are written through echorl_verl.atomic.
"""

from echorl_verl.report.runlog import ReportError, RunLog, load_run
from echorl_verl.report.summary import format_summary, summarize

__all__ = ["ReportError", "RunLog", "load_run", "summarize", "format_summary"]
