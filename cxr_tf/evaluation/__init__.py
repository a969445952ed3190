"""Scoring a model: metrics, threshold rules, evaluate, predict, figures and run ensembles."""
