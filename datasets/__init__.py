"""The datasets cxr-tf reads, one folder each (``datasets/<name>/``), shipped inside the package as
``cxr_tf.datasets``: ``card.toml`` (how to obtain it, licence, citation, layout, findings, splits,
expected counts, crosswalk entries, TFDS builder), ``source.py`` (the real layout -> a manifest, on
the shared steps of :mod:`cxr_tf.sources.base`) and ``phantom.py`` (a phantom tree in that layout).
``cxr_tf.sources`` finds them; adding a dataset is adding a folder and its test."""
