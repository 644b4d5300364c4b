"""The Mars data: loading and validation (`loading`: `load_mars`, `MarsData`), the synthetic default (`synthetic`),
alien masks (`aliens`), stored splits (`splits`), the input pipeline (`dataset`, and `batches` on JAX) and
augmentation (`augment`). Imports `configs` and `runtime` only."""
