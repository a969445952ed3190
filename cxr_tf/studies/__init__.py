"""Paper recipes and studies: ``cxr-tf reproduce``, the weak-labels chain, their reports, and
dataset statistics."""
