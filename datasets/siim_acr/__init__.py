"""SIIM-ACR Pneumothorax Segmentation 2019: card, source and phantom writer."""
