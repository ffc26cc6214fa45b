# histoloop backend and worker image (one image, two commands).
# CUDA-enabled torch wheels (pinned in constraints.txt) run on a GPU host and fall back to the CPU.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HISTOLOOP_MODEL_STORE=/store HF_HUB_OFFLINE=1 YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0
WORKDIR /app

COPY pyproject.toml constraints.txt README.md ./
COPY kernel kernel
COPY histoloop histoloop
COPY converters converters
COPY training training
COPY ml_backend ml_backend
COPY workers workers
RUN pip install -c constraints.txt . && useradd --create-home --uid 1000 histoloop \
    && mkdir -p /store && chown histoloop /store
USER histoloop
VOLUME ["/store"]
EXPOSE 9090
# beyond loopback `serve` starts only with HISTOLOOP_BASIC_AUTH_USER/_PASSWORD and HISTOLOOP_WEBHOOK_SECRET set
CMD ["histoloop", "serve", "--host", "0.0.0.0", "--port", "9090"]
