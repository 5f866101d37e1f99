"""Widgets: show state, emit requests. No decoding, no inference, no file I/O."""
