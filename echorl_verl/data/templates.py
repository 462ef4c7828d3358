"""Prompt templates: the EchoRL/LUFFY system prompt, verl's plain suffix, multiple-choice and code wording.

Every template turns a problem text into a chat list ``[{"role": ..., "content": ...}, ...]`` (verl's
``prompt`` column). ``echo`` (default) is the authors' prompt; ``verl`` is verl's example suffix.
"""

from __future__ import annotations

# Copied byte for byte from shared/data/benchmarks/math_eval_suite.parquet (LUFFY's valid.all.parquet):
# tests/test_data_prep.py checks it against every row of that file, arc_c.parquet and gpqa_diamond.parquet.
ECHO_SYSTEM_PROMPT = 'Your task is to follow a systematic, thorough reasoning process before providing the final solution. This involves analyzing, summarizing, exploring, reassessing, and refining your thought process through multiple iterations. Structure your response into two sections: Thought and Solution. In the Thought section, present your reasoning using the format: "<think>\n {thoughts} </think>\n". Each thought should include detailed analysis, brainstorming, verification, and refinement of ideas. After "</think>\n," in the Solution section, provide the final, logical, and accurate answer, clearly derived from the exploration in the Thought section. If applicable, include the answer in \\boxed{} for closed-form results like multiple choices or mathematical solutions.'

# verl examples/data_preprocess/math_dataset.py (and gsm8k.py's wording with \\boxed{}):
# `question + " " + instruction_following`, one user turn, no system prompt.
VERL_MATH_SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."

TEMPLATES = ("echo", "verl")

# The instruction LUFFY's gpqa_diamond.parquet puts before each question (the simple-evals GPQA wording);
# {letters} is "ABCD" there, "ABCDEFGHIJ" for a 10-option MMLU-Pro question.
MC_INSTRUCTION = (
    "Answer the following multiple choice question. The last line of your response should be of the "
    "following format: 'ANSWER: $LETTER' (without quotes) where LETTER is one of {letters}. "
    "Think step by step before answering."
)

# Code: the model writes a whole program in one ```python block; the scorer runs that block.
CODE_SYSTEM_PROMPT = (
    "You are an expert Python programmer. Think through the problem step by step, then give your final "
    "solution as one complete, self-contained Python program in a single ```python code block."
)
CODE_VERL_SUFFIX = "Let's think step by step and output the final code in a ```python code block."


def check_template(template: str) -> None:
    """Raise ValueError naming the valid choices when ``template`` is unknown."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}: choose one of {', '.join(TEMPLATES)}")


def math_prompt(problem: str, template: str = "echo") -> list[dict]:
    """Chat prompt for a math (or any \\boxed{}-answer) question.

    echo: [system: ECHO_SYSTEM_PROMPT, user: problem], problem unchanged (as in the shared eval files).
    verl: [user: problem + " " + VERL_MATH_SUFFIX].
    """
    check_template(template)
    if template == "echo":
        return [{"role": "system", "content": ECHO_SYSTEM_PROMPT}, {"role": "user", "content": problem}]
    return [{"role": "user", "content": problem + " " + VERL_MATH_SUFFIX}]


def option_lines(letters: list[str], options: list[str]) -> str:
    """``"A) text\\nB) text"``: one line per option, joined by newlines, no trailing newline."""
    return "\n".join(f"{letter}) {text}" for letter, text in zip(letters, options))


def choice_user_text(question: str, letters: list[str], options: list[str], instructed: bool) -> str:
    """The user turn of a multiple-choice question, in the layout of LUFFY's files.

    instructed=False (arc_c.parquet): ``question\\n\\nA) ..\\nB) ..\\n`` (trailing newline).
    instructed=True (gpqa_diamond.parquet): ``MC_INSTRUCTION\\n\\nquestion\\n\\nA) ..\\nD) ..`` (none).
    """
    body = option_lines(letters, options)
    if instructed:
        return MC_INSTRUCTION.format(letters="".join(letters)) + "\n\n" + question + "\n\n" + body
    return question + "\n\n" + body + "\n"


def code_prompt(problem: str, template: str = "echo") -> list[dict]:
    """Chat prompt for a code task; ``problem`` already holds the task text (and any starter code)."""
    check_template(template)
    if template == "echo":
        return [{"role": "system", "content": CODE_SYSTEM_PROMPT}, {"role": "user", "content": problem}]
    return [{"role": "user", "content": problem + "\n\n" + CODE_VERL_SUFFIX}]
