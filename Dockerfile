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
# Runtime dependencies only: the [test] extra is never installed.
RUN /opt/vramgate/bin/pip install --no-cache-dir . \
 && /opt/vramgate/bin/python -c "import vramgate.operator"

FROM ${PYTHON_IMAGE}
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
