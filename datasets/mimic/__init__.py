"""MIMIC-CXR and MIMIC-CXR-JPG: card, source and phantom writer."""
