"""Invariant: any stored bytes decode to a snapshot (features parse or raise InvalidResponseError) or CorruptEntryError.

Run: python -m fuzz.fuzz_snapshot -max_total_time=60 fuzz/corpus/snapshot (or make fuzz).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from fuzz.properties import snapshot_value


def main() -> None:
    atheris.Setup(sys.argv, snapshot_value)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
