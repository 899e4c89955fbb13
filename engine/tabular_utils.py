"""Kept so that tabular models saved before the code moved to ``engine/tabular/`` still load: their pickled
pipelines name ``engine.tabular_utils.prepare_frame``. New code imports from the ``engine.tabular`` modules."""

from engine.tabular.columns import prepare_frame

__all__ = ["prepare_frame"]
