# One image for the three processes of the shop; docker-compose.yaml picks the command:
#   python -m services | python worker.py | python -m api | python -m core.seed
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data

WORKDIR /app

# Dependencies first, so a code change does not reinstall them: install the project from
# its metadata alone, then drop it and install it again with the code.
COPY pyproject.toml README.md ./
RUN mkdir -p core && touch core/__init__.py \
    && pip install . \
    && pip uninstall --yes order-saga \
    && rm -rf core build *.egg-info

COPY . .
RUN pip install --no-deps . && rm -rf build *.egg-info
# shop cannot write .pyc into /app: without these the sandbox recompiles every workflow.
RUN python -m compileall -q /app

RUN useradd --system --create-home --uid 10001 shop \
    && mkdir -p /data && chown shop /data
USER shop

EXPOSE 8000 50051
CMD ["python", "-m", "api"]
