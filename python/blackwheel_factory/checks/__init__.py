"""Checks: ABI (`abi-check`), cubins (`verify`), launch-time shared memory, ELF diffs."""
