"""NIH ChestX-ray14: card, source and phantom writer."""
