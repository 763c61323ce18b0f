"""Local stand-ins for the district systems the syncs read, speaking their documented APIs."""
