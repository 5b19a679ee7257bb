"""Helpers shared by tests: real local services started on free ports and always stopped."""
