"""SLURM templates and the local one-node cluster script, shipped as package data."""
