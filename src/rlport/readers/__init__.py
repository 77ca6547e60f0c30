"""Pickle-free, bounded readers of foreign files: allow-list pickle, torch .pth, gym spaces, untrusted zips."""
