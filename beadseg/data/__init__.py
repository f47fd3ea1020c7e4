"""Data: synthetic bead images and reading/writing user TIFF image/mask pairs."""
