"""Data preparation: benchmarks and training sets in verl's RL parquet format.

Modules (one idea each):
    templates     prompt wording (the EchoRL/LUFFY system prompt, verl's suffix, multiple choice, code)
    rows          the row schema, row building and field validation (errors name row and field)
    parquet_io    atomic, deterministic parquet writing
    sources       loading a source: a local json/jsonl/parquet file, or the hub via datasets.load_dataset
    math_sets     math training and evaluation sets
    choice_sets   multiple-choice (out-of-distribution) sets
    code_sets     code sets (HumanEval(+), MBPP(+), LiveCodeBench, DeepCoder)
    cli           the shared command line of the data_prep/ scripts
"""
