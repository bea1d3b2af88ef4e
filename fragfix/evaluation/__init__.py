"""Evaluation: damage held-out data, repair it, count what came back (bytes and checksummed files)."""
