"""From trained models to labels and scores: compiled inference (`inference`) with flip TTA (`tta`), soft-vote
ensembles (`ensemble`) and decoding of probabilities to labels (`decoding`); the Kaggle submission CSV
(`submission`) and leaderboard-style scores (`leaderboard`)."""
