# The Discord bot in a container: `docker build -t seance .` then
# `docker run --env-file .env -v seance-data:/app/data seance` (or `docker compose up`, see compose.yaml).
# The embedded model (the `local` extra) is left out: it builds llama.cpp from source and
# only the console uses it without a key; the bot needs model keys anyway.
# Overridable (--build-arg PYTHON_IMAGE=...) for hosts that pull through a registry mirror.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid, so a bind-mounted host folder can be given to it (chown 10001 DIR).
# The volume is /app/data, where the default DATABASE_PATH and PICTURES_DIR (and .env.example's
# values, data/...) already point; created here owned by that user, so a new volume is writable.
RUN useradd --no-log-init --create-home --uid 10001 seance \
    && install -d -o seance -g seance /app/data

WORKDIR /app
# The pinned lock first, so a code change does not reinstall every dependency.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY bot ./bot
COPY cogs ./cogs

# Numeric, so a platform that refuses root (Kubernetes runAsNonRoot) can tell it is not.
USER 10001
VOLUME ["/app/data"]
# Exec form: Python is PID 1 and receives Docker's SIGTERM itself; the bot stores its rooms,
# says it is going offline and closes the database (give it time: stop_grace_period in compose.yaml).
CMD ["python", "-m", "bot"]
