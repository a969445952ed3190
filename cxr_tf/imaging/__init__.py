"""Image decoding by content and geometry-tracking resizing (no TensorFlow here)."""

from cxr_tf.imaging.decode import decode_file, decode_bytes, to_uint8_gray  # noqa: F401
from cxr_tf.imaging.geometry import ASPECTS, Affine, fit, frame_to_pixels  # noqa: F401
