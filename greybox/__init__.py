"""greybox: procedural Blender scenes, exact render passes, ControlNet-guided stylisation.

This package holds only what every stage shares: the version, the error types that map to exit
codes, and atomic file writes. Stages live in the top-level packages ``scenes``, ``procedural``,
``passes``, ``stylize`` and ``render_farm``.
"""

__version__ = "0.1.0"
