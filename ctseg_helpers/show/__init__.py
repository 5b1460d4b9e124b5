"""ctseg_helpers.show"""
