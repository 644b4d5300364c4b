"""The Mars data: loading and validation (`loading`: `load_mars`, `MarsData`), the hidden test labels
(`hidden_labels`), the synthetic default (`synthetic`), alien masks (`aliens`), stored splits (`splits`), the input
pipeline (`dataset`, and `batches` on JAX) and augmentation (`augment`). Imports `configs` and `runtime` only."""
