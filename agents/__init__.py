"""Everything Faust: the app, topics, agents, web views and the worker entry point.

Agents only decode (via the core), call the core, persist and send.
"""
