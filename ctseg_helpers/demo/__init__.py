"""ctseg_helpers.demo"""
