"""Invariant: any bytes as an Edge/GraphQL entitlementsState answer give a parsed snapshot or StiggUnavailableError.

Run: python -m fuzz.fuzz_state -max_total_time=60 fuzz/corpus/state (or make fuzz).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from fuzz.properties import state_body


def main() -> None:
    atheris.Setup(sys.argv, state_body)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
