"""Configuration as plain data, the ground floor: the task's constants, the experiments (Table 1, its ablations and
the Improved track as parent + delta entries) and the run profiles. Nothing here imports Keras or TensorFlow."""
