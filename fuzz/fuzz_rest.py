"""Invariant: any bytes as Stigg's answer give a parsed snapshot or StiggUnavailableError.

Run: python -m fuzz.fuzz_rest -max_total_time=60 fuzz/corpus/rest (or make fuzz).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from fuzz.properties import rest_body


def main() -> None:
    atheris.Setup(sys.argv, rest_body)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
