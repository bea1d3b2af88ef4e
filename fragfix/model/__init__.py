"""The model: the autoencoder, its CPU inference form, checkpoints, where tensors run, the bundled weights."""
