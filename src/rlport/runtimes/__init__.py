"""rlport.runtimes."""
