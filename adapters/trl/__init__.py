"""Placeholder: the trl adapter arrives with its own issue."""
