"""Tests of the sync clients against the stand-ins in tests/sync_standins; listed_source.py is
a small device source for the shared sync code's tests."""
