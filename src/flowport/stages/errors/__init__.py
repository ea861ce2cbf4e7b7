"""Error stages: where error records go (Discard, Write to File)."""
