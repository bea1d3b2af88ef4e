"""The byte-repair rule: the per-file predictor and its experts, the noisy channel, the decision, the model gate."""
