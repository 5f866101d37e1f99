"""Inference: files and folders (``predictor.Predictor``), live sources
(``streaming.StreamingEngine``), and the one result type (``results.WindowResult``)."""
