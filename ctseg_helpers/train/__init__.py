"""ctseg_helpers.train"""
