"""ctseg_helpers.prepare"""
