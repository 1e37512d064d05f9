# tokens-bot: HTTP mode under gunicorn by default; Socket Mode with `docker run … tokens-bot socket`.
# Build: docker build -t tokens-bot .   Lint: hadolint Dockerfile (part of `make test`).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: build the wheel and install it, with its dependencies, into a self-contained venv ---
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY bot ./bot
COPY demo ./demo
# The venv has no pip of its own: the builder's pip installs into it, and nothing can pip install later.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/tokens-bot \
    && python -m pip --python /opt/tokens-bot/bin/python install --no-cache-dir /wheels/*.whl

# --- runtime: the venv and nothing else; no compiler, no pip cache, no sources ---
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/tokens-bot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=3000
RUN groupadd --system --gid 10001 tokens \
    && useradd --system --uid 10001 --gid tokens --home-dir /var/lib/tokens-bot --create-home \
       --shell /usr/sbin/nologin tokens
COPY --from=builder /opt/tokens-bot /opt/tokens-bot
USER 10001:10001
# The embedded PostgreSQL (no DATABASE_URL: a demo) keeps its data under .tokens-bot here.
WORKDIR /var/lib/tokens-bot
EXPOSE 3000
# 200 while the database answers. Socket Mode serves no HTTP: run it with --no-healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]
CMD ["tokens-bot", "serve"]
