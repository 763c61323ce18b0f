"""Local stand-ins for the district systems the syncs read (Apple, Google, OneRoster)."""
