"""OpenI (Indiana University chest X-ray collection): card, source and phantom writer."""
