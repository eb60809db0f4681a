"""Capture sources: the only code that opens files or sockets."""
