"""RL Baselines3 Zoo run folders in and out."""
