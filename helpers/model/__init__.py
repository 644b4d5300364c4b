"""The building blocks of a model: feature-channel layers (`layers`), the UNets (`models`), losses, metrics (with the
cheap `argmax`), optimizers and schedules (`optim`), training callbacks, and the FLOP count of a model (`flops`).
Imports `configs` and `runtime` only."""
