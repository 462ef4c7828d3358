"""Answer extraction from model responses: the last ``\\boxed{...}``, the text the authors' math reward
parses (after ``</think>``) and the last code block.

Everything here is linear in the length of the response (string scans, no backtracking
regexes), so it is safe on hostile strings of any size.
"""

from __future__ import annotations

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def strip_thinking(response: str) -> str:
    """Return the part of ``response`` after the last ``</think>`` (the whole string if absent)."""
    cut = response.rfind("</think>")
    return response if cut < 0 else response[cut + len("</think>") :]


def think_solution(response: str) -> str | None:
    """The text the EchoRL/LUFFY authors' math reward parses, or None when it scores the response 0.

    Their reward (LUFFY verl/mix_src: ``"<think>\\n" + response``, then math_verify_reward.py) requires
    both ``<think>`` and ``</think>`` and keeps ``split("</think>")[1]``: the text between the first
    ``</think>`` and the next one (to the end when there is one). With ``<think>`` prepended, only a
    missing ``</think>`` gives None.
    """
    full = "<think>\n" + response
    if "</think>" not in full:
        return None
    return full.split("</think>")[1]


def _balanced_from(text: str, open_idx: int) -> str | None:
    """Content of the brace group that opens at ``text[open_idx] == '{'``; None if never closed.

    Escaped braces (``\\{``, ``\\}``) do not count, as in LaTeX.
    """
    depth = 0
    i = open_idx
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2  # skip the escaped character, whatever it is
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_idx + 1 : i]
        i += 1
    return None


def last_boxed(response: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` after ``</think>``, or None.

    Braces are matched (nested groups kept). ``\\boxed 5`` (argument without braces) gives
    ``"5"``. As in verl's ``last_boxed_only_string``, a last box that is never closed (a
    truncated response) gives None rather than an earlier box.
    """
    text = strip_thinking(response)
    starts = [text.rfind(cmd) for cmd in _BOX_COMMANDS]
    start = max(starts)
    if start < 0:
        return None
    j = start + len(_BOX_COMMANDS[starts.index(start)])
    k = j
    while k < len(text) and text[k] in " \t\n":
        k += 1
    if k < len(text) and text[k] == "{":
        return _balanced_from(text, k)
    if k > j and k < len(text):  # ``\boxed 5``: the next whitespace-free token
        return text[k:].split(maxsplit=1)[0].rstrip("$.")
    return None


def last_code_block(response: str) -> str | None:
    """The last fenced code block after ``</think>``; a ``python`` block wins over others.

    Returns the code without the fence line, or None when the response holds no closed block.
    """
    parts = strip_thinking(response).split("```")
    # parts[1], parts[3], ... are block bodies when followed by a closing fence
    blocks = []
    for k in range(1, len(parts) - 1, 2):
        head, _, body = parts[k].partition("\n")
        lang = head.strip().lower()
        if " " in lang or not _:  # not a fence header line: the whole part is code
            lang, body = "", parts[k]
        blocks.append((lang, body))
    if not blocks:
        return None
    python_blocks = [code for lang, code in blocks if lang in ("python", "py", "python3")]
    return (python_blocks or [code for _, code in blocks])[-1]
