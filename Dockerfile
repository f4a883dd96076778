# syntax=docker/dockerfile:1
# Orchestrion: one image for every role of the scale-out topology (see docker-compose.yml).
#   docker build -t orchestrion .
#   docker run -p 8000:8000 orchestrion                      # the API, embedded mode (SQLite)
#   docker run orchestrion orchestrion worker --concurrency 32  # any other role
# Scale-out roles read ORCHESTRION_DATABASE_URL (postgresql://...) and ORCHESTRION_REDIS_URL.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- build: the wheels
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY src ./src
# Orchestrion's wheel and those of all its scale-out dependencies, at the versions pinned in
# constraints.txt (the ones the test suite ran on): the runtime stage installs from them
# alone, with no package index and no compiler.
RUN pip wheel --wheel-dir /wheels --constraint constraints.txt ".[scaleout]"

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="orchestrion" \
      org.opencontainers.image.description="Durable workflow orchestration engine" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A bind mount rather than COPY: the wheels do not stay behind in a layer of the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "orchestrion[scaleout]"
RUN useradd --system --uid 10001 --user-group --home-dir /app --create-home \
        --shell /usr/sbin/nologin orchestrion
WORKDIR /app
# Numeric, so that runAsNonRoot-style checks can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# For the API (the default command). The other roles serve no HTTP: docker-compose.yml turns
# the check off for them. No proxy: the probe is for this container's own port.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.build_opener(r.ProxyHandler({})).open('http://127.0.0.1:%s/health' % os.environ.get('ORCHESTRION_PORT', '8000'), timeout=4)"]
# Exec form: orchestrion is PID 1 and gets the SIGTERM of `docker stop` (it stops gracefully).
CMD ["orchestrion", "serve", "--host", "0.0.0.0"]
