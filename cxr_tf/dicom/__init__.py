"""DICOM: the display pipeline (modality LUT, VOI, photometric interpretation), de-identification and
the ``cxr-tf dicom`` tool."""
