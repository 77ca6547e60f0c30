"""rlport.importers."""
