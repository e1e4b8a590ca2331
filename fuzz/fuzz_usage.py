"""Invariant: any JSON as usage input gives a record that rebuilds from its payload, or TypeError/ValueError.

Run: python -m fuzz.fuzz_usage -max_total_time=60 fuzz/corpus/usage (or make fuzz).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from fuzz.properties import usage_input


def main() -> None:
    atheris.Setup(sys.argv, usage_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
