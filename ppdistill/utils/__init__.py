"""Shared utilities: config loading, checkpoints, logging."""
