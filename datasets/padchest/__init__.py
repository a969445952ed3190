"""PadChest (BIMCV, Hospital San Juan de Alicante): card, source and phantom writer."""
