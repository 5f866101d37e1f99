"""Real pretrained networks that install from the package registry, ported to PyTorch.

``archives`` finds and hash-checks the downloaded package archives; ``yamnet`` and
``i3d`` hold the ports (plain ``nn.Module``) and their one-time converters into our
folder format; ``kinetics400`` assembles them into the zero-training IMD model.
"""
