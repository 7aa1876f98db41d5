"""The synthetic demo fleet, with its ground truth."""
