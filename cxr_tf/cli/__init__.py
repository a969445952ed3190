"""The ``cxr-tf`` command line. Commands are thin; heavy modules are imported inside them, so
``cxr-tf --help`` never imports TensorFlow or pydicom."""

from cxr_tf.cli.main import main  # noqa: F401
