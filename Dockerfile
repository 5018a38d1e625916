# One image for the API and the worker. On a GPU host, install the CUDA build of torch 2.13.0
# (the pin in pyproject.toml resolves to it from PyPI) and run the worker with a GPU.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY mpt mpt
COPY core core
COPY service service
COPY worker worker
COPY bench bench
COPY migrations migrations
# The migrations ship inside the installed package, so `mpt-service migrate` (the compose
# `migrate` service) needs nothing from /app; alembic.ini is for running `alembic` by hand.
# The s3 extra lets every container use a bucket as its artifact store (docs/storage.md).
RUN pip install --no-cache-dir ".[s3]" && rm -rf build *.egg-info
ENV MPT_VAR_DIR=/var/lib/mpt
CMD ["mpt-service", "serve", "--host", "0.0.0.0", "--no-migrate"]
