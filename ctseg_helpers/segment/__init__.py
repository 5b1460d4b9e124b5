"""ctseg_helpers.segment"""
