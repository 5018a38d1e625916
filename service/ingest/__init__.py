"""Turning uploaded files (dataset archives, model packages) into validated objects."""
