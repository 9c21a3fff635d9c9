"""greybox: procedural Blender scenes, exact render passes, ControlNet-guided stylisation.

This package holds only what every stage shares: the version, the error types that map to exit
codes, atomic file writes, frame selections and the job folder's frame file names, and binary-mask
dilation. Stages live in the top-level packages ``scenes``, ``procedural``,
``passes``, ``stylize`` and ``render_farm``.
"""

__version__ = "0.1.0"
