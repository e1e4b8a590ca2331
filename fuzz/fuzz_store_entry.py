"""Invariant: any bytes as an outbox payload or signed entry give a record/ValueError and never verify.

Run: python -m fuzz.fuzz_store_entry -max_total_time=60 fuzz/corpus/store_entry (or make fuzz).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from fuzz.properties import stored_record


def main() -> None:
    atheris.Setup(sys.argv, stored_record)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
