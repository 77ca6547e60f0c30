"""rlport.bundle."""
