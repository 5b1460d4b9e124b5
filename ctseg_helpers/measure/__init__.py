"""ctseg_helpers.measure"""
