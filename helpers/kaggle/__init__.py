"""The self-contained Kaggle kernel: `python -m helpers.kaggle bundle | check` (`bundle`)."""
