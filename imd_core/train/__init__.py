"""The training engine behind ``imd train`` and ``imd eval`` (Qt-free).

``engine.train`` runs or resumes a run folder and reports JSON-lines events
(``events.py``); ``evaluate.evaluate`` computes every metric; ``config.TrainConfig`` is
the typed, versioned recipe. See README "imd train" and docs/ARCHITECTURE.md "Files a
run writes".
"""
