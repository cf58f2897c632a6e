"""Online learning beside the batch models: today the per-link gain on the bandwidth
model's correction (:mod:`online.gain`), given to the bandwidth processor through the
core's ``OnlineAdjuster`` protocol."""
