"""Media: decoding files with PyAV (:mod:`.decode`) and live sources (:mod:`.live`).

PyAV, OpenCV and sounddevice are imported inside these modules only, so model code
imports on a machine without them.
"""
