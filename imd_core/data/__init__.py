"""Datasets: indexes (:mod:`.manifest`), checks (:mod:`.check`), transforms, the clip
dataset and loader (:mod:`.dataset`) and cross-modality augmentation (:mod:`.augment`)."""
