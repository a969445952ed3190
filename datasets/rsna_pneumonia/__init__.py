"""RSNA Pneumonia Detection Challenge (2018, stage 2): card, source and phantom writer."""
