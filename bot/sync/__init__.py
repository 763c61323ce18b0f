"""Clients for the district's systems that DeviceCare keeps in step with."""
