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
# # Train a U-Net segmentation model
#
# Train a 2D U-Net on your labelled CT or MR slices. Put the data in `main_dir/train/dicoms`
# (one DICOM file per slice) and `main_dir/train/labels` (a label image with the same name for each
# slice: 0 = background, 1..`num_labels` = your ROIs). The trained model, its checkpoints, the
# training history and the training curves are written to `model_dir`; use the model in
# `test.ipynb` to segment new scans.
#
# Set everything in **Settings**, then run all cells. Training can be stopped at any time with
# *Kernel → Interrupt*: a checkpoint is saved, and `resume = True` continues from it later.

# %% [markdown]
# ## Imports

# %%
# %matplotlib inline
from ctseg_helpers.prepare.check import check_data
from ctseg_helpers.show.notebook import setup_notebook
from ctseg_helpers.show.training import plot_result, show_batch
from ctseg_helpers.train import TrainConfig, first_batch, prepare_training_data, system_info, train_model
from ctseg_helpers.workflows.finetune import finetune_step

setup_notebook()  # ctseg's messages as plain lines, its errors as one line without a traceback

# %% [markdown]
# ## Systems Characteristics
#
# Memory, and whether a GPU is available for training.

# %%
system_info()

# %% [markdown]
# ## Settings
#
# Every setting of this notebook is in the next cell.

# %% tags=["parameters"]
# Data and output
main_dir = "../data"  # holds train/dicoms and train/labels
model_filename = "unet"  # stem of every file this run writes
model_dir = "../trained_model"  # checkpoints, best model, history and curves go here

# Labels
num_labels = 1  # number of ROIs (background excluded)
label_names = []  # one name per ROI, label 1 first, e.g. ["LV blood pool", "LV myocardium"]

# Training (None = planned from your data; the plan is printed below, and any value set here wins)
epochs = 100  # each epoch is batches_per_epoch batches of random patches
max_minutes = None  # stop, with a checkpoint, after this many minutes (the learning rate decays to fit it)
input_shape = None  # side of the square training patch in pixels (planned: the median slice, at most 128 on a CPU)
target_spacing_mm = None  # pixel spacing to train at, e.g. (1.4, 1.4) (planned: the median of your slices)
batch_size = None  # patches per batch (planned)
batches_per_epoch = None  # (planned: 50 on a CPU, 250 on a GPU)
learning_rate = 1e-3  # peak learning rate, reached after a short warm-up, then decayed ("poly")
folds = 1  # K > 1: train K models on patient-wise folds and segment with their ensemble
print_checkpoint = 10  # print a status line every N epochs
save_checkpoint = 50  # save model_dir/<model_filename>_<epoch>.keras every N epochs

# Augmentation (label-safe, applied on the fly)
augment = True  # False turns every augmentation off
augment_options = {}  # flips/90° rotations are off (they swap left and right); e.g. {"p_flip": 0.5} for unsided ROIs

# Validation, model and run control (defaults suit most data)
validation_fraction = None  # share of slices (whole patients) for validation; None: 0.2 if 3+ patients remain to train
validation_dir = None  # or a folder with dicoms/ and labels/ to validate on instead
postprocessing = "auto"  # keep the largest region / fill holes per ROI where it helps on validation; or "none"
loss = "dice_ce"  # "dice_ce", "dice", "focal", "weighted_ce" or "tversky"
# loss_options, e.g. {"class_weights": [0.1, 1, 2]} (weighted_ce), {"gamma": 2} (focal),
# {"alpha": 0.3, "beta": 0.7} (tversky)
loss_options = {}
lr_schedule = "poly"  # "poly", "cosine" or "constant"
levels = None  # U-Net pooling levels (planned); input_shape must be a multiple of 2**levels
base_filters = 16  # filters of the first level, doubled at each level
deep_supervision = False  # True: the loss also on the coarser decoder levels (nnU-Net's deep supervision)
fit_mode = "patch"  # "patch" (native resolution), or "resize" / "pad" whole slices to input_shape
seed = 0
resume = False  # continue from the newest checkpoint in model_dir
overwrite = False  # delete a previous run of the same model_filename in model_dir first
max_slices = None  # read only this many slices (quick trial runs)
allow_missing_labels = False  # True: train even if an ROI value appears in no label (refused by default)
mixed_precision = "auto"  # float16 on a GPU, bfloat16 on a CPU with AMX; True/False to force
devices = "auto"  # "auto": every GPU (MirroredStrategy) when there are several; or "cpu", "gpu"
# Fine-tuning with corrected slices (last section; skipped while finetune_model_path is None)
finetune_model_path = None  # a trained model to refine, e.g. "../trained_model/unet_best.keras"
finetune_data_dir = None  # the corrected slices: dicoms/ and labels/ (or train/dicoms and train/labels)
finetune_old_data = None  # the model's old training data (e.g. main_dir), mixed in half/half so it does not forget
finetune_epochs = 10  # epochs of the model's batches per epoch
finetune_learning_rate = None  # None: a tenth of the model's training learning rate
finetune_max_minutes = None  # stop after this many minutes


# %% [markdown]
# The settings, checked and gathered for training:

# %%
config = TrainConfig(
    main_dir=main_dir,
    model_filename=model_filename,
    out_dir=model_dir,
    input_shape=input_shape,
    num_labels=num_labels,
    label_names=tuple(label_names),
    epochs=epochs,
    batch_size=batch_size,
    batches_per_epoch=batches_per_epoch,
    target_spacing_mm=target_spacing_mm,
    learning_rate=learning_rate,
    lr_schedule=lr_schedule,
    folds=folds,
    postprocessing=postprocessing,
    loss_options=loss_options,
    fit_mode=fit_mode,
    devices=devices,
    allow_missing_labels=allow_missing_labels,
    print_checkpoint=print_checkpoint,
    save_checkpoint=save_checkpoint,
    augmentation={"enabled": augment, **augment_options},
    validation_fraction=validation_fraction,
    validation_dir=validation_dir,
    loss=loss,
    levels=levels,
    base_filters=base_filters,
    deep_supervision=deep_supervision,
    seed=seed,
    resume=resume,
    overwrite=overwrite,
    max_slices=max_slices,
    max_minutes=max_minutes,
    mixed_precision=mixed_precision,
)

# %% [markdown]
# ## Data Pre-Visualization
#
# ### Data check
#
# Every image needs a label of the same size with values 0..`num_labels`.

# %%
check_data(f"{main_dir}/train", num_labels)

# %% [markdown]
# ### Reading the training data and planning the training
#
# The plan is made from your data (pixel spacing, slice and ROI sizes, intensities): slices are normalised
# for their modality and resampled to the planned spacing, and whole patients are set aside for validation.
# Any setting you gave above wins over the plan.

# %%
data = prepare_training_data(config)
data.describe()

# %%
print(data.plan.describe() if data.plan else "Whole slices fitted to the input (fit_mode)")

# %% [markdown]
# ### The first augmented batch
#
# Exactly what the network sees, with the ROIs overlaid (each label always has the same colour).

# %%
images, labels = first_batch(config, data)
print(f"images: {images.shape} {images.dtype}, labels: {labels.shape} {labels.dtype}")

# %%
show_batch(images, labels, label_names, num_labels);

# %% [markdown]
# ## Model Training
#
# A status line every `print_checkpoint` epochs; checkpoints every `save_checkpoint` epochs in `model_dir`.
# Interrupt the kernel to stop with a checkpoint.

# %%
result = train_model(config, data)

# %% [markdown]
# ## Training Performance Evaluation
#
# Loss and mean Dice score per epoch.

# %%
plot_result(result);

# %% [markdown]
# Final loss and mean Dice score, validation Dice of the best model, the post-processing chosen on validation,
# and where the models are (`result.model_path` is what test.ipynb segments with):

# %%
print(result)

# %% [markdown]
# ### How to judge it (user manual, section 5)
#
# - **Both curves still falling at the end**: the model has not converged; train longer
#   (`resume = True` with a higher `epochs`).
# - **Training Dice high, validation Dice much lower or falling**: overfitting. Use more (and
#   more varied) training data, keep augmentation on, or train an ensemble (`folds = 3` or more):
#   `<model_filename>_best.keras` already keeps the epoch with the highest validation Dice.
# - **The Dice+CE loss** is the soft Dice loss plus cross-entropy, so it starts near 2 and falls
#   well below 1 as training succeeds; only the Dice *score* lies between 0 and 1.
# - **Both low** (mean Dice below about 0.7 after many epochs), most common reasons first:
#   inconsistent labels; too few labelled slices or patients; ROIs only a few pixels wide at this
#   `input_shape`; sided (left/right) ROIs with flips on; a learning rate too high (curves jump) or
#   too low (curves barely move); mixed modalities or body regions; a very rare ROI (try
#   `loss = "focal"` or `"tversky"`).
# - Look at each ROI, not only the mean: `<model_filename>_history.csv` has the Dice of every ROI
#   (`dice_<roi name>`), and one poor ROI can hide behind a good mean.

# %% [markdown]
# ## Fine-tuning with corrected slices
#
# Refine a trained model with slices whose segmentation you corrected (user manual, section 6, *Correct the
# results and fine-tune the model*; `ctseg finetune` on the command line). The model keeps its settings and
# plan and trains a few more epochs at a small learning rate; a new model `<model stem>_finetuned.keras` is
# written beside it, and the old one is never changed. Runs only when `finetune_model_path` is set.

# %%
finetune_result = finetune_step(
    finetune_model_path,
    finetune_data_dir,
    old_data=finetune_old_data,
    epochs=finetune_epochs,
    learning_rate=finetune_learning_rate,
    max_minutes=finetune_max_minutes,
    overwrite=overwrite,
)
