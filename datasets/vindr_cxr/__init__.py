"""VinDr-CXR (PhysioNet release and Kaggle VinBigData layout): card, source and phantom writer."""
