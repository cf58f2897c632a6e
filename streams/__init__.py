"""The transport-free stream core: records, codecs, windows, stores, processors, replay.

Nothing in this package imports Faust; the worker, ``novacron replay`` and the tests all
run the same code.
"""
