"""Shipped reference data (see README.md): Atari human/random scores and published Atari 100k runs."""
