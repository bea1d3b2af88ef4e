"""Training: the loop, the noise module, fragments and the file-level split, corpus samples, torchrun plumbing."""
