"""Tables and curves from EchoRL runs' metrics (verl's `file` logger JSONL).

    python -m echorl_verl.report summary runs/grpo_echo_qwen/metrics.jsonl
    python -m echorl_verl.report table runs/*_qwen --out table.md --csv table.csv [--step last|best|N]
    python -m echorl_verl.report plot runs/grpo_echo_qwen runs/grpo_baseline_qwen --out plots/

Modules: runlog (reading, errors), suite (benchmarks), summary, table, plot, atomic (output files).
"""

from echorl_verl.report.runlog import ReportError, RunLog, load_run
from echorl_verl.report.summary import format_summary, summarize

__all__ = ["ReportError", "RunLog", "load_run", "summarize", "format_summary"]
