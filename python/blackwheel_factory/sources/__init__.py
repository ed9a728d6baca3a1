"""Sources: fetch, verify, unpack and patch the pinned upstream artifacts (`sources`)."""
