"""Tests of the sync clients against the stand-ins in tests/sync_standins."""
