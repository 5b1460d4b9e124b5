"""ctseg_helpers.model: the U-Net builder, losses and metrics, and model settings.

``build_unet`` and the losses import TensorFlow, so they are imported from their modules
(``ctseg_helpers.model.unet``, ``ctseg_helpers.model.losses``), keeping this package cheap.
"""
