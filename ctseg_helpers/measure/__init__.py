"""Measure what was segmented: ROI areas (mm²) and volumes (mL) in ``area.py``, metrics in ``metrics.py``."""
