"""Parse stage: raw page bytes → typed rows and newly discovered links (runs in worker processes)."""
