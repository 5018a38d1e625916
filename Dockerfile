# syntax=docker/dockerfile:1
# Two images from one file, each with the exact versions of its lock file:
#   docker build --target api -t mpt-upgrades-api .      the API (and `mpt-service migrate`):
#       CPU-only torch, requirements/service.txt
#   docker build --target worker -t mpt-upgrades-worker . the Celery worker, one per GPU:
#       torch's CUDA build (PyPI's Linux wheel, which brings the CUDA libraries as packages;
#       the host's NVIDIA driver comes in through the container toolkit), requirements/worker.txt
# Both install the project's wheel without dependencies over the lock, run as the unprivileged
# user `mpt` (uid 10001), keep their state under /var/lib/mpt (the artifact volume) and read
# every setting from MPT_* variables (.env.example lists them). Nothing secret is baked in.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/mpt --shell /usr/sbin/nologin mpt \
    && mkdir -p /var/lib/mpt/artifacts \
    && chown -R mpt:mpt /var/lib/mpt
WORKDIR /var/lib/mpt

# The project's wheel (its packages, the migrations, the dashboard's templates), built once.
FROM base AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mpt mpt
COPY mptctl mptctl
COPY core core
COPY service service
COPY worker worker
COPY bench bench
COPY migrations migrations
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM base AS worker
COPY requirements/worker.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels
USER 10001:10001
ENV MPT_VAR_DIR=/var/lib/mpt
# Answers from the worker's main process while its pool child trains; loads no torch.
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["python", "-m", "worker.healthcheck"]
CMD ["celery", "-A", "worker.tasks", "worker", "-Q", "gpu", "--concurrency=1", "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"]

# Last, so a plain `docker build .` makes the API image.
FROM base AS api
COPY requirements/service.txt /tmp/requirements.txt
# torch first, from PyTorch's CPU-only index (the lock's version, without a CUDA runtime:
# about a fifth of the size); the lock then finds it installed and takes the rest from PyPI.
RUN pip install --index-url https://download.pytorch.org/whl/cpu \
        "torch==$(sed -n 's/^torch==\([^[:space:]]*\).*/\1/p' /tmp/requirements.txt)" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels
USER 10001:10001
ENV MPT_VAR_DIR=/var/lib/mpt
EXPOSE 8000
# /readyz: the database answers and every active release is loaded.
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
CMD ["mpt-service", "serve", "--host", "0.0.0.0", "--no-migrate"]
