"""Hyperparameter search with keras-tuner: the search space as data, resumable trials."""
