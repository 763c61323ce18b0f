# DeviceCare's container image. Thin on purpose: the wheel is installed by deploy/install.sh
# and started by deploy/entrypoint.sh, the two scripts tests/integration/test_installed_wheel.py
# runs. One image serves every process: `web` (the default), `worker`, `mail`, `scheduler`,
# and `db upgrade` as a release step (see compose.yaml).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the wheel, and the environment it runs in ----------------------------------------
FROM ${PYTHON_IMAGE} AS build
# The uv pinned in requirements/test.txt (a test keeps the two the same).
ARG UV_VERSION=0.13.9
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_NO_CACHE=1
RUN pip install "uv==${UV_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY bot bot
COPY services services
COPY storage storage
COPY workflows workflows
COPY templates templates
RUN uv build --wheel --out-dir /dist .
COPY requirements/runtime.txt requirements/runtime.txt
COPY deploy/install.sh deploy/install.sh
RUN sh deploy/install.sh /opt/devicecare /dist/devicecare-*.whl requirements/runtime.txt

# --- run ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/devicecare --create-home \
        --shell /usr/sbin/nologin devicecare \
    && install -d -o devicecare -g devicecare -m 0750 /var/lib/devicecare/blobs
COPY --from=build /opt/devicecare /opt/devicecare
COPY deploy/entrypoint.sh /usr/local/bin/devicecare-entrypoint
ENV PATH=/opt/devicecare/bin:$PATH \
    DEVICECARE_VENV=/opt/devicecare \
    PYTHONUNBUFFERED=1 \
    BLOB_DIR=/var/lib/devicecare/blobs \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /var/lib/devicecare
USER devicecare
EXPOSE 3000
# Alive means /healthz answers 200. Only the web process serves HTTP: compose turns this off
# for the others.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"
ENTRYPOINT ["devicecare-entrypoint"]
CMD ["web"]
