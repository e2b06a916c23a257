"""Dataverse Web API v9.2 emulator."""
