"""Devices, processes, precision, progress, and plans of training jobs."""
