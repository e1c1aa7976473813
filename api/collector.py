"""Python's garbage collector, tuned for a process that serves c360.

What start-up makes (the schema, the modules, the stores' clients, the embedded stores'
state) lives as long as the process; a full collection walking it every few hundred requests
paused the event loop for 20-30 ms, the p99 of a 2-core bench. So, once start-up is done:

- `gc.freeze()` moves everything alive into a generation no collection walks;
- the youngest generation is collected after `C360_GC_YOUNG_THRESHOLD` allocations instead of
  Python's 700: an agent query allocates tens of thousands of objects, nearly all freed by
  reference counting before any collection sees them, and a collection every 700 both costs
  time and promotes the objects of requests still running to older generations, whose
  collections cost more.

Only `c360 serve` (the app made by `api.app.app_from_environment`) does this; tests and
embedders keep Python's defaults.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def settle_after_startup(young_threshold: int) -> None:
    """Freeze what start-up made, and collect the young generation every `young_threshold`
    allocations (0: leave the collector as Python set it)."""
    if not young_threshold:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
    log.info(
        "garbage collector: %d start-up objects frozen, young generation every %d allocations",
        gc.get_freeze_count(),
        young_threshold,
    )
