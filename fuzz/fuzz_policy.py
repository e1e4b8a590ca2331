"""Invariant: any bytes as fallback.yaml give a valid policy or PolicyError, never a half-built one.

Run: python -m fuzz.fuzz_policy -max_total_time=60 fuzz/corpus/policy (or make fuzz).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from fuzz.properties import policy_bytes


def main() -> None:
    atheris.Setup(sys.argv, policy_bytes)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
