# One image for the worker (`python -m worker`, the default) and the fleet emulator
# (`python -m fleet.emulator ...`); docker-compose.yml runs both from it.
# Only the runtime dependencies: the dev extras carry the Temporal server binaries for tests.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY models ./models
COPY rules ./rules
COPY workflows ./workflows
COPY activities ./activities
COPY fleet ./fleet
COPY worker ./worker
COPY starter ./starter
RUN pip install --no-cache-dir . \
    && rm -rf /src/build /src/*.egg-info

# A user without privileges; /data (the emulator's SQLite file) belongs to it, and a fresh named
# volume mounted there takes that ownership.
RUN useradd --create-home --uid 10001 --user-group upgrades \
    && mkdir /data \
    && chown upgrades:upgrades /data
USER upgrades
WORKDIR /home/upgrades

CMD ["python", "-m", "worker"]
