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
RUN pip install --no-cache-dir .
ENV MPT_VAR_DIR=/var/lib/mpt
CMD ["mpt-service", "serve", "--host", "0.0.0.0", "--no-migrate"]
