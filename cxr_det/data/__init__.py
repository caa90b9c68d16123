"""Data: dataset registrars, image reading (PNG/JPEG/DICOM), mapper, augmentations."""
