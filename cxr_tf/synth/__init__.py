"""Synthetic phantom radiographs (:mod:`cxr_tf.synth.phantom`) and writers that lay them out
exactly as the real datasets are laid out on disk (:mod:`cxr_tf.datasets.chestxray14.phantom`)."""
