"""ctseg_helpers.io"""
