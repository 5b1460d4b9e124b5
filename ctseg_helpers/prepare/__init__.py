"""Preparing training data: pairing and checking, normalisation, augmentation, datasets."""

from ctseg_helpers.prepare.check import DataReport, check_data, resolve_split_dir

__all__ = ["DataReport", "check_data", "resolve_split_dir"]
