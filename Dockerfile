# The NovaCron stream worker (serving only: no TensorFlow; `pip install .[train]` trains).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# README.m[d]: the readme pyproject.toml names, copied when present.
COPY pyproject.toml README.m[d] ./
COPY novacron ./novacron
COPY streams ./streams
COPY agents ./agents
COPY models ./models
COPY online ./online
COPY schemas ./schemas
RUN pip install . && useradd --create-home --uid 10001 novacron \
    && mkdir -p /app/.novacron && chown novacron /app/.novacron

USER novacron
# /healthz and /metrics (Settings.web_port).
EXPOSE 6066
CMD ["novacron", "worker"]
