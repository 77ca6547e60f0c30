"""rlport.cli."""
