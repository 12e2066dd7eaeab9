# The vramgate operator image: `docker build -t vramgate:0.1.0 .` from the repository root.
# Stage 1 builds the package and its dependencies into a virtual environment (all of them ship
# wheels, so no compiler is needed); stage 2 copies only that environment onto a clean base.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/vramgate
WORKDIR /src
COPY pyproject.toml ./
COPY operator/ operator/
# Runtime dependencies only: the [test] extra is never installed. pip reads the builder's pip.conf
# (index, certificate) from a build secret, when one is given, so none of it lands in a layer:
# `--secret id=pip.conf,src=$HOME/.config/pip/pip.conf`.
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    /opt/vramgate/bin/pip install --no-cache-dir . \
 && /opt/vramgate/bin/python -c "import vramgate.operator"

FROM ${PYTHON_IMAGE}
# OCI labels: --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD)
# --build-arg SOURCE=$(git remote get-url origin)
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="vramgate" \
      org.opencontainers.image.description="Kubernetes operator that sizes LLM deployments to their GPUs" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PATH=/opt/vramgate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 vramgate \
 && useradd --system --uid 10001 --gid vramgate --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin vramgate
COPY --from=build /opt/vramgate /opt/vramgate
# Numeric, so that Kubernetes' runAsNonRoot can verify it without resolving the name.
USER 10001:10001
# Webhook (VRAMGATE_WEBHOOK_PORT), metrics (VRAMGATE_METRICS_PORT), liveness (VRAMGATE_LIVENESS_PORT).
EXPOSE 9443 9090 8080
ENTRYPOINT ["python", "-m", "vramgate.operator"]
