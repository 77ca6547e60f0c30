"""torch modules -> graph ops."""
