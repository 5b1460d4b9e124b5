"""ctseg_helpers.model"""
