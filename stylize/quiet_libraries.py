"""Keep diffusers' and transformers' output to what applies to a greybox user.

Called before the first diffusers import in a process (:func:`quiet_libraries`, idempotent). What
it turns off, each at its source, and why; every other warning and log line of those libraries
still reaches the user:

- transformers' advice that an image processor "requires torchvision (not installed)": diffusers
  imports the CLIP and SigLIP image processors while it loads a pipeline, and ``load_ip_adapter``
  builds a ``CLIPImageProcessor`` for the reference images; transformers then falls back to the
  Pillow implementation and says so. The Pillow one is what greybox wants (it registers it by name
  before loading an IP-Adapter, :mod:`stylize.reference_adapter`), and PyPI's torchvision is a CUDA
  build that breaks diffusers on a CPU machine, so the advice must not be followed. Dropped by a
  logging filter on the one logger that emits it (``transformers.utils.import_utils``), matched by
  its message.
- diffusers' "There are modules in UNet2DConditionModel that should be kept in float32: []"
  warning: ``load_ip_adapter`` moves the UNet to the dtype it already has, and the check warns for
  an empty list of such modules (nothing to keep). Only the empty-list form is dropped
  (``diffusers.models.modeling_utils``).
- the progress bars of diffusers ("Loading pipeline components...") and transformers ("Loading
  weights"), through their own switches: greybox's progress display counts frames per stage, and
  a bar per loaded component written into it from a worker process only garbles it. (The
  denoising loop's bar is off per pipeline, ``set_progress_bar_config(disable=True)``.)

Nothing is imported at module level; torch is not imported at all.
"""

from __future__ import annotations

import logging
import re

# logger name -> messages dropped from it (regular expressions, searched in the formatted message)
DROPPED_LOG_MESSAGES: dict[str, tuple[str, ...]] = {
    "transformers.utils.import_utils": (r"requires torchvision \(not installed\); falling back to",),
    "diffusers.models.modeling_utils": (r"that should be kept in float32: \[\]\. Casting directly",),
}

_done = False


class DropMatchingMessages(logging.Filter):
    """Drops the records of one logger whose message matches one of ``patterns``; passes the rest."""

    def __init__(self, patterns: tuple[str, ...]):
        super().__init__()
        self.patterns = tuple(re.compile(p) for p in patterns)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in self.patterns)


def install_log_filters() -> None:
    """Attach the message filters to their loggers (once each; before the libraries log anything)."""
    for name, patterns in DROPPED_LOG_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMatchingMessages) for f in logger.filters):
            logger.addFilter(DropMatchingMessages(patterns))


def quiet_libraries() -> None:
    """Install the filters, then switch diffusers' and transformers' progress bars off (idempotent)."""
    global _done
    if _done:
        return
    # 1. Filters first: importing diffusers below must not log the advice before they are in place.
    install_log_filters()
    # 2. The libraries' own progress-bar switches.
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # pragma: no cover - transformers is a dependency of every diffusion pipeline we load
        pass
    else:
        transformers_logging.disable_progress_bar()
    _done = True
