"""Math training sets (openr1, dapo, math_lighteval, deepscaler) in verl's parquet format.

    python data_prep/math_train.py --dataset KEY --output_dir DIR [--input FILE] [--template echo|verl]

`--help` lists the sets and options. The code lives in echorl_verl/data/ (importable and tested).
"""

import os
import sys

# Run from a checkout without installing: make the repository root importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from echorl_verl.data.cli import entry, main_math_train  # noqa: E402

if __name__ == "__main__":
    entry(main_math_train)
