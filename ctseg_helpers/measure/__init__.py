"""Measure what was segmented.

- ``area.py``: ROI areas per slice (mm²), the area table and CSV, ROI volumes (mL);
- ``metrics.py``, ``evaluate.py``, ``agreement.py``: segmentation metrics against manual labels
  and the agreement of predicted and manual areas.
"""
