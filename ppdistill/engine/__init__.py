"""Training and evaluation: command-line setup, component building, the loop, evaluation."""
