"""Placeholder: the rllib adapter arrives with its own issue."""
