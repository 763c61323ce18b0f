"""Sync clients driven against local stand-ins of the sources' APIs."""
