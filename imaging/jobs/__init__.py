"""The orchestration: one module per command, each a set of per-node steps run concurrently."""
