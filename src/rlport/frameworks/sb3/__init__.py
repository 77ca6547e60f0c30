"""Stable-Baselines3 both ways: live models and .zip files in, SB3 models and files out."""
