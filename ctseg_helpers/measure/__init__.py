"""Measure what was segmented, from arrays: nothing here reads a folder or writes a file.

- ``area.py``: ROI areas per slice (mm²), the area table, ROI volumes (mL);
- ``metrics.py``: segmentation metrics of one label map against another (Dice, HD95, ...);
- ``evaluation.py``: a scan's predicted and manual label maps (:class:`~ctseg_helpers.measure.evaluation.Case`)
  evaluated slice by slice and per volume, summaries, areas along the stack;
- ``agreement.py``: the agreement of predicted and manual areas (Bland–Altman, correlation).

Reading label maps and DICOM folders for these is done by :mod:`ctseg_helpers.workflows`
(``areas.py``, ``evaluate.py``).
"""
