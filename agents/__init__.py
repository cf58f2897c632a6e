"""The worker and what it is configured from: settings, wiring, the Faust app and agents.

``settings`` is the one frozen settings object; ``wiring`` turns it into the core's plain
arguments (registry, models, pipeline) for the worker and the command line alike; ``app``
holds the Faust agents, which only hand raw batches to the pipeline and send what it
returns, plus ``/healthz`` and ``/metrics``; ``worker`` is the entry point.
"""
