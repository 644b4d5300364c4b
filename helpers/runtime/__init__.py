"""The process the code runs in: the CPU's facts (`cpu`), the Keras backend's few differing operations (`backend`),
devices, precision, XLA and strategies (`device`), bit-identical reruns (`determinism`), where files live (`paths`)
and the one atomic writer (`files`). Imports only `configs`."""
