"""Invariant: any stored bytes decode to a snapshot (features parse or raise InvalidResponseError) or CorruptEntryError.

Run: python -m fuzz.fuzz_snapshot -max_total_time=60 fuzz/corpus/snapshot (or make fuzz).
"""

from fuzz.target import main

if __name__ == "__main__":
    main("snapshot_value")
