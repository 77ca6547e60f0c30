"""Everything that knows one framework: SB3 (both ways), RL Zoo run folders, torch modules."""
