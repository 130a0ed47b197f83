"""Plotting: ``mad.pl``. Every function takes ``show``, ``ax`` (where it draws one panel)
and ``return_fig``, as in scanpy."""

from ._tissue import tissue_overview

__all__ = ["tissue_overview"]
