"""Placeholder: the torchrl adapter arrives with its own issue."""
