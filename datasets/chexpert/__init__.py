"""CheXpert (Stanford): card, source and phantom writer."""
