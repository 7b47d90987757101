# pgsched: one image for every role (api, worker, scheduler, migrate); the command picks the role.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY pgsched ./pgsched
COPY sql ./sql
COPY migrations ./migrations
RUN pip install ".[binary,redis]" && useradd --system --uid 10001 pgsched

USER pgsched
ENTRYPOINT ["pgsched"]
CMD ["--help"]
