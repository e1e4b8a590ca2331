"""The pure decision core: no I/O, only the standard library, attrs and models."""
