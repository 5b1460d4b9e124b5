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
# # Segment new scans and measure cross-sectional areas
#
# Use this notebook after `train.ipynb` has trained a model. Choose a folder holding the DICOM images
# you wish to segment (CT or MR; one scan, or several: every series in the folder is segmented as
# its own stack), and the trained model segments every slice. You get:
#
# - a label map per slice (PNG, values 0 = background, 1..N = your ROIs, named like the DICOM file),
# - a JPG preview per slice with the ROIs coloured, and an animation of the slices of each series (GIF),
# - the cross-sectional area of each ROI on each slice in mm² (`areas.csv`, each row naming its
#   series when the folder holds several), with the mean and standard deviation over slices, and the
#   ROI volumes in mL of each series whose slices form a 3D stack;
# - if you ask for them (`nifti`, `dicom_seg`), the label maps of each series as a NIfTI volume and as
#   a DICOM Segmentation object, to open over the scan in 3D Slicer, ITK-SNAP or a PACS.
#
# Everything goes to a new folder under `output_dir` (`../predictions/<folder name>_<date-time>`), so
# earlier results are never replaced. The areas are measured at the scan's own resolution, with the
# pixel size from the DICOM files (`PixelSpacing`); `fov` and `matrix_size` are used only for files
# without it.
#
# Steps: Imports · Settings · Generate Segmentation Predictions · Calculate Cross-Sectional Area ·
# Check these slices.

# %% [markdown]
# ## Imports

# %%
# %matplotlib inline
from ctseg_helpers.show.folder_picker import pick_folder
from ctseg_helpers.show.notebook import setup_notebook, table_view
from ctseg_helpers.workflows import run_segmentation

setup_notebook()  # ctseg's messages as plain lines, its errors as one line without a traceback

# %% [markdown]
# ## Settings
#
# Every setting of the notebook. Paths are relative to the `notebooks/` folder. `labels_list` and
# `input_shape` must be those the model was trained with: they are checked against the model
# before any work.

# %% tags=["parameters"]
# ROI names, label 1 first (a first name "background" is dropped); None: the names stored with the model
labels_list = ["vertebral body", "right psoas major", "left psoas major",
               "right multifidus-erector spinae", "left multifidus-erector spinae", "subcutaneous fat"]
# The trained model (.keras file written by train.ipynb), or the ensemble of a K-fold training
# ("../trained_model/unet.ensemble.json", or the folder holding the fold models)
model_filename = "../trained_model/unet_best.keras"
# Side of the square network input in pixels, as in training (None: take it from the model)
input_shape = None
# Field of view in mm and image size in pixels: used only for files without PixelSpacing
fov = None            # e.g. 400.0, or (rows_mm, cols_mm)
matrix_size = None    # e.g. 512, or (rows, cols)
# Folder of the DICOM images to segment; None shows a folder chooser below
dicom_dir = None
# Where the run folders are written
output_dir = "../predictions"

# Where the folder chooser starts
browse_from = "../data"
# Segment only this series (SeriesInstanceUID) of the folder (None: every series in it)
series_uid = None
# Segmentation: tile mode blends overlapping patches ("gaussian", "hann" or "average")
mode = None           # None: as the model was trained ("tile" or "resize")
overlap = 0.25
blend = "gaussian"
batch_size = 8
tta = False           # average over the views the model was trained on (quarter turns or flips; 4x slower)
# Write to output_dir/<run_name> and replace an earlier run's outputs there (else: a new folder)
overwrite = False
run_name = None       # None: the DICOM folder's name
# Outputs
previews = True       # JPG previews with coloured ROIs
animation = True      # animated GIF of all slices
include_patient_id = False  # record the DICOM PatientID in run.json (needed for dicom_seg)
nifti = False         # the label maps of each series as a NIfTI volume (segmentation.nii.gz)
dicom_seg = False     # ... and as a DICOM Segmentation object (segmentation.dcm; needs include_patient_id)
probabilities = False  # True: probability maps per label (probabilities.h5, 8 bits); "nifti": one .nii.gz per ROI
# Measures next to the areas: each ROI's pixel values, perimeter, maximum diameter (and CT fat fraction)
measures = True
fat_window_hu = None  # CT: the HU window counted as fat, e.g. (-190, -30); None: that default
n_check = 5           # slices listed under "Check these slices"

# %% [markdown]
# ## Generate Segmentation Predictions
#
# ### Choose the DICOM folder
#
# With `dicom_dir = None` a folder chooser appears: click a folder to open it (`..` goes up, or type
# a path and press Enter), then **Use this folder**, then run the next cells. It browses the
# folders of the machine the notebook runs on, also when that is a remote server.

# %%
dicom_folder = pick_folder(dicom_dir, start=browse_from)

# %% [markdown]
# ### Segment every slice
#
# Checks the settings against the model, reads each series of the folder, segments its slices (a
# progress bar shows how far it is) and writes the label maps, previews, animations and area table.

# %%
run = run_segmentation(
    model_filename, dicom_folder.path, output_dir, labels_list, fov, matrix_size,
    input_shape=input_shape, series_uid=series_uid, mode=mode, overlap=overlap, blend=blend,
    batch_size=batch_size, tta=tta, overwrite=overwrite, run_name=run_name, previews=previews,
    animation=animation, include_patient_id=include_patient_id, nifti=nifti, dicom_seg=dicom_seg,
    probabilities=probabilities, measures=measures, fat_window_hu=fat_window_hu,
)
print(run.summary())

# %% [markdown]
# ### Animated rendering
#
# Every slice with its ROIs coloured (the same colours in every ctseg figure), played as a light
# preview (at most 100 slices, 400 px wide, so the saved notebook stays small; the caption says how
# many are shown). Every slice at full size is in `animation.gif` in the run folder; with several
# series, one animation per series (`animation_series<number>.gif`). To step through slices one by
# one, use the slice browser in `visualize.ipynb`.

# %%
run.show_animation()

# %% [markdown]
# ## Calculate Cross-Sectional Area
#
# Area of each ROI on each slice in mm² (pixel count x pixel area from `PixelSpacing`), with the
# DICOM file and the slice position (mm along the slice normal), after the series (number, UID and
# description) when the folder holds several. The last rows are the mean and the sample standard
# deviation over slices (one pair per slice position for a cine series, `mean @ 12.5 mm`). Saved as
# `areas.csv` in the run folder (4 decimals), with the columns of the next table; shown here to 0.1 mm².

# %%
table_view(run.area_view())

# %% [markdown]
# ### Pixel values, shape and uncertainty
#
# The other columns of `areas.csv`, per ROI: mean, SD and median of its pixel values (HU for CT,
# signal for MR), perimeter and maximum diameter in mm, and for CT its fat fraction (share of pixels
# within `fat_window_hu`); then each slice's uncertainty (`uncertainty_entropy`, 0..1).

# %%
table_view(run.measures_view(), decimals=2)

# %% [markdown]
# ### Volumes
#
# When the slices of a series form one 3D stack (equally spaced positions, one image each): the
# volume of each ROI in mL, the sum of its areas times the distance between slices, one row per
# series and ROI when the folder holds several. Saved as `volumes.csv`.

# %%
run.volume_report()

# %% [markdown]
# ## Check these slices
#
# The slices most worth a look before you use the areas: ranked by the model's uncertainty on and
# around its ROIs (`uncertainty_entropy`; with `tta` or an ensemble also `uncertainty_disagreement`,
# the share of views that disagree) and by abrupt area changes from the slice before, with the
# reasons in words. The figure shows them with their ROIs.

# %%
table_view(run.slices_to_check(n_check), decimals=2)

# %%
run.show_slices_to_check(n_check);
