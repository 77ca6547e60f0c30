"""rlport.graph."""
