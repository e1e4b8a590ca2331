"""Invariant: any bytes as an outbox payload or signed entry give a record/ValueError and never verify.

Run: python -m fuzz.fuzz_store_entry -max_total_time=60 fuzz/corpus/store_entry (or make fuzz).
"""

from fuzz.target import main

if __name__ == "__main__":
    main("stored_record")
