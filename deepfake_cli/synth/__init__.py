"""Whole-face synthesis: a GAN trained on face folders makes faces of nobody (train-facegan, synth)."""
