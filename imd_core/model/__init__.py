"""The IMD model: AST tagger, SAVLD, relevance gating, two-stream video Transformer, fusion.

Import the submodules directly (``from imd_core.model.imd_model import IMDModel``);
this package imports nothing heavy itself.
"""
