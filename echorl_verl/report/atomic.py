"""Moved to echorl_verl/atomic.py, the package's one atomic-write helper.

This name is kept only while echorl_verl/data/outcome.py still imports it; delete this file once that
import reads `from echorl_verl.atomic import write_text`.
"""

from echorl_verl.atomic import write_all, write_text

__all__ = ["write_all", "write_text"]
