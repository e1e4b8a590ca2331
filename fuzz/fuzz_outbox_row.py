"""Invariant: any bytes as an outbox row's fields decode to a record or ValueError, nothing else.

Run: python -m fuzz.fuzz_outbox_row -max_total_time=60 fuzz/corpus/outbox_row (or make fuzz).
"""

from fuzz.target import main

if __name__ == "__main__":
    main("outbox_row")
