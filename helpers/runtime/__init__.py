"""The process the code runs in: the CPU's facts (`cpu`), the Keras backend's few differing operations (`backend`),
devices, precision, XLA and strategies (`device`), bit-identical reruns (`determinism`) and where files live
(`paths`). Imports only `configs`."""
