# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Visualize a segmentation: look, check, measure
#
# Use this notebook after `test.ipynb` (or `ctseg segment`) has segmented a scan. It shows the
# scan with the predicted ROIs and, when you have manual labels for the same slices, says how good
# the segmentation is in the numbers papers report (Dice, IoU, HD95, ASSD, surface Dice, area
# agreement).
#
# Steps: slice browser · animation · intensity histogram and sample grid · 3D surfaces (when the
# slices form a volume) · metric tables and Bland–Altman plot (when manual labels are given) ·
# area along the stack with abrupt jumps flagged · saving the figures and tables.
#
# **Input layout.** `dicom_dir` holds one DICOM series. `prediction_dir` holds one label map per
# slice, named like the DICOM file (`<dicom stem>.png`, values 0 = background, 1..N = ROIs) — a
# segmentation run writes them to `<run folder>/labels/`. `truth_dir` (optional) holds manual label
# maps named the same way (PNG or NPY); slices without one are simply not evaluated.

# %% [markdown]
# ## Settings
#
# Every setting of the notebook; paths are relative to the `notebooks/` folder.

# %% tags=["parameters"]
# Folder of the DICOM series that was segmented
dicom_dir = "../data/phantom/test/dicoms"
# Predicted label maps (<dicom stem>.png), e.g. "../predictions/<run folder>/labels"
prediction_dir = "../predictions/segmentation/labels"
# Manual label maps for the same slices, or None when you have none
truth_dir = None
# ROI names, label 1 first (None: "ROI 1", "ROI 2", ...)
labels_list = ["vertebral body", "right psoas major", "left psoas major",
               "right multifidus-erector spinae", "left multifidus-erector spinae", "subcutaneous fat"]
# Where figures and tables are saved
output_dir = "../predictions/visualize"
# Replace files an earlier run of this notebook saved in output_dir
overwrite = False
# Series to show when dicom_dir holds several (None: the folder must hold one)
series_uid = None

# Display
opacity = 0.45                # ROI colour opacity, 0..1
animation_interval_ms = 200   # time per frame of the animation
animation_max_frames = 100    # most slices the notebook's animation shows (animation.gif has them all)
histogram_bins = 100
n_grid_samples = 12           # slices in the sample grid
surface_source = "prediction" # 3D surfaces of "prediction" or "truth"
max_faces = 20000             # largest triangle count per 3D surface (coarser above)
surfaces_separate = True      # one 3D panel per ROI (False: all ROIs in one panel)

# Evaluation and quality checks
tolerance_mm = 2.0            # tolerance of the surface Dice
jump_rel_threshold = 0.5      # area change between neighbouring slices flagged as abrupt (share)
jump_min_fraction = 0.1       # ... when also larger than this share of the ROI's largest area
n_check = 5                   # slices listed under "Check these slices"

# %% [markdown]
# ## Imports

# %%
# %matplotlib inline
from pathlib import Path

from IPython.display import HTML, display

from ctseg_helpers.measure.evaluation import evaluate_case, slice_areas
from ctseg_helpers.show import animation, browser, plots, render3d
from ctseg_helpers.show.notebook import setup_notebook, table_or_note
from ctseg_helpers.workflows.evaluate import load_case, slices_to_check_in_run

setup_notebook()  # ctseg's messages as plain lines, its errors as one line without a traceback

# %% [markdown]
# ## Load the scan and the label maps

# %%
case = load_case(dicom_dir, prediction_dir, truth_dir, labels_list, series_uid)
print(case.summary())

# %% [markdown]
# ## Slice browser
#
# Move the slider to go through the slices; tick the ROIs to show; set the colour opacity. Left: the
# image alone; middle: the prediction; right: the manual labels (when given).

# %%
browser.case_browser(case, opacity=opacity)

# %% [markdown]
# ## Animated rendering
#
# The slices with the predicted ROIs. `animation.gif` in `output_dir` has every slice at full size; the
# notebook shows a lighter copy (at most `animation_max_frames` slices, one in n of a longer stack, 400
# pixels wide), so that the notebook stays small when it is saved. The line under it says what it shows.

# %%
anim = animation.make_animation(case.images, case.prediction, case.label_names,
                               interval_ms=animation_interval_ms, alpha=opacity)
animation_path = animation.save_gif(anim, Path(output_dir) / "animation.gif", overwrite=overwrite)
HTML(animation.to_html(anim, gif_path=animation_path, max_frames=animation_max_frames))

# %% [markdown]
# ## Intensity histogram
#
# Pixel values of the whole scan (grey) and inside each predicted ROI (coloured); Hounsfield units for
# CT. An ROI whose histogram is wide or has two peaks often includes some of its neighbours.

# %%
histogram_figure = plots.intensity_histogram(case.images, case.modality, case.prediction,
                                             case.label_names, bins=histogram_bins)
histogram_figure

# %% [markdown]
# ## Sample-stack grid
#
# Evenly spaced slices from the first to the last, with the predicted ROIs.

# %%
grid_figure = plots.sample_stack_grid(case.images, case.prediction, case.label_names,
                                      n_samples=n_grid_samples, alpha=opacity, file_names=case.stems)
grid_figure

# %% [markdown]
# ## 3D surface rendering
#
# A marching-cubes surface of each ROI with the true voxel spacing — only when the slices form a volume
# (equally spaced positions, one image per position).

# %%
if case.is_volume:
    surfaces_figure = render3d.render_case(case, source=surface_source, max_faces=max_faces,
                                           separate=surfaces_separate)
    display(surfaces_figure)
else:
    surfaces_figure = None
    print(f"No 3D rendering: {case.volume_reason}.")

# %% [markdown]
# ## Metric tables
#
# Per ROI over the slices that have manual labels: mean ± std (median). Distances in mm. A metric is
# left out on slices where it is undefined (for example Dice where the ROI is absent from both maps);
# the full per-slice table is saved as `metrics.csv`.

# %%
if case.truth is not None:
    evaluation = evaluate_case(case, tolerance_mm=tolerance_mm)
    display(plots.metric_table(evaluation.summary))
    if evaluation.volume_metrics is not None:
        display(evaluation.volume_metrics)
else:
    evaluation = None
    print("No manual labels (truth_dir = None): no metrics.")

# %% [markdown]
# ## Bland–Altman plot
#
# Agreement of predicted and manual ROI areas (mm²): predicted against manual, then the difference
# against the mean with the bias and the 95 % limits of agreement; the table adds correlation and a
# paired t-test.

# %%
if evaluation is not None:
    bland_altman_figure = plots.bland_altman_figure(evaluation.metrics, case.label_names)
    display(bland_altman_figure, evaluation.agreement)
else:
    bland_altman_figure = None
    print("No manual labels (truth_dir = None): no area agreement.")

# %% [markdown]
# ## Area along the stack, abrupt jumps flagged
#
# The area of each ROI on every slice. A slice is flagged (black x) when its area differs from the
# previous slice's by more than `jump_rel_threshold` of the larger of the two (and by more than
# `jump_min_fraction` of the ROI's largest area): look at those slices in the browser above. An ROI
# appearing or vanishing is flagged too, which is expected at the ends of an organ.

# %%
areas = slice_areas(case, jump_rel_threshold, jump_min_fraction)
areas_figure = plots.area_vs_slice_figure(areas, case.label_names)
display(areas_figure, table_or_note(areas[areas["jump"]], "*No abrupt area change between neighbouring slices.*"))

# %% [markdown]
# ## Check these slices
#
# From the run's `areas.csv` (the folder above `prediction_dir`): the slices ranked by the model's
# uncertainty on and around its ROIs and by abrupt area changes, with the reasons; look at them in
# the slice browser above. Label maps that no ctseg run wrote have no uncertainty to rank by.

# %%
check = slices_to_check_in_run(Path(prediction_dir).parent, case.label_names, n_check, missing_ok=True,
                               rel_threshold=jump_rel_threshold, min_fraction=jump_min_fraction)
table_or_note(check, "*No slice stands out, or no ctseg run's areas.csv beside prediction_dir.*")

# %% [markdown]
# ## Save figures and tables
#
# Nothing in `output_dir` is replaced unless `overwrite = True`.

# %%
saved = plots.save_outputs(
    output_dir,
    figures={"histogram.png": histogram_figure, "sample_grid.png": grid_figure,
             "surfaces_3d.png": surfaces_figure, "bland_altman.png": bland_altman_figure,
             "area_vs_slice.png": areas_figure},
    tables={"slice_areas.csv": areas, "slices_to_check.csv": check,
            **(evaluation.tables() if evaluation is not None else {})},
    overwrite=overwrite,
)
print("\n".join(str(path) for path in [animation_path, *saved]))
