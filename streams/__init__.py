"""The transport-free stream core.

Bottom: errors, records (samples, window entries, output record types), topic names,
the protocols processors call (predictor, online adjuster), codec and file sources.
Above: windows and window stores, processors (one module each, registered per input),
the pipeline and its builder, replay. Nothing here imports Faust, a broker client,
Redis or settings; the worker, ``novacron replay`` and the tests run the same code.
"""
