"""A bare Faust agent loop: the yardstick of the worker's single-sample throughput.

Per event: decode the JSON value, send one small record keyed like the input. It runs
with the worker's own Faust settings (raw serialisers, acks=-1, linger 2 ms, in-memory
store) and sends through the producer directly, as the worker does, so the difference
to ``novacron worker`` is the validation, windows, models and records, not Faust.

Started by ``bench/worker_throughput.py`` as::

    python bench/bare_faust.py worker --loglevel warn

with ``BARE_APP_ID``, ``BARE_SOURCE``, ``BARE_SINK`` and ``BARE_WEB_PORT`` set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import faust
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.settings import Settings  # noqa: E402

settings = Settings()
app = faust.App(
    os.environ["BARE_APP_ID"],
    broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
    value_serializer="raw",
    key_serializer="raw",
    datadir=str(settings.state_dir / "faust" / os.environ["BARE_APP_ID"]),
    web_host="127.0.0.1",
    web_bind="127.0.0.1",
    web_port=int(os.environ["BARE_WEB_PORT"]),
    producer_acks=-1,
    producer_linger_ms=2,
    consumer_auto_offset_reset="earliest",
    store="memory://",
)
source = app.topic(os.environ["BARE_SOURCE"], value_serializer="raw", key_serializer="raw")
sink = os.environ["BARE_SINK"]


@app.agent(source)
async def bare(stream: faust.StreamT) -> None:
    async for event in stream.events():
        value = orjson.loads(event.value)
        out = {"link_id": value["link_id"], "ts": value["ts"], "pred": value["bandwidth_mbps"]}
        await app.producer.send(sink, event.key, orjson.dumps(out), None, None, None)


if __name__ == "__main__":
    app.main()
