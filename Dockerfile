# bindkit serve on CPU: a drop-in for Weaviate's multi2vec-bind inference container (port 8080), plus
# OpenAI-style /v1/embeddings. Build:  docker build -t bindkit-serve .
# Weights are not baked in (imagebind_huge is ~4.5 GB, CC BY-NC 4.0): mount a folder holding
# imagebind_huge.pth or a converted imagebind_huge/ at /app/weights ($BINDKIT_WEIGHTS), or consent to the download
# into the /home/app/.cache volume on the first start with BINDKIT_SERVE_ARGS="--download" (without it, and with
# no terminal to ask on, bindkit refuses to download). bindkit_toy is in the wheel: BINDKIT_SERVE_ARGS="--model
# bindkit_toy" serves it at once. See docs/serving.md.
FROM python:3.11-slim AS base

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# libgomp: torch's OpenMP runtime; libsndfile: soundfile (its wheel bundles one, this is the fallback)
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libsndfile1 \
 && rm -rf /var/lib/apt/lists/*

# Build the wheel (it carries the cards and bindkit_toy as package data) in a throw-away stage.
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md LICENSE constraints.txt ./
COPY encoders ./encoders
COPY weights/bindkit_toy ./weights/bindkit_toy
COPY bindkit ./bindkit
RUN pip install "build>=1.2" && python -m build --wheel --outdir /dist

FROM base
WORKDIR /app
COPY constraints.txt ./
# CPU-only torch first (the default index would pull the multi-GB CUDA build), at the tested versions
RUN pip install -c constraints.txt torch torchvision torchaudio --index-url https://download.pytorch.org/whl/cpu
# then the wheel itself (not editable), with the serve extra, every version pinned by constraints.txt
COPY --from=wheel /dist/*.whl /tmp/
RUN pip install -c constraints.txt "$(ls /tmp/bindkit-*.whl)[serve]" && rm /tmp/bindkit-*.whl

RUN groupadd --gid 2000 app && useradd --uid 1000 --gid app --create-home app \
 && mkdir -p /home/app/.cache/bindkit && chown -R app:app /app /home/app
USER app
VOLUME ["/home/app/.cache/bindkit"]

EXPOSE 8080
# Weaviate's module sends no token, so on a private compose network the server runs without one (--insecure);
# set BINDKIT_TOKEN to require a bearer token (e.g. when the port is published). Extra options (e.g.
# "--model imagebind_huge --max-batch 16") go in BINDKIT_SERVE_ARGS.
ENV BINDKIT_SERVE_ARGS="" BINDKIT_WEIGHTS=/app/weights
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/.well-known/ready').status != 204)"
CMD ["/bin/sh", "-c", "exec bindkit serve --host 0.0.0.0 --port 8080 $([ -z \"$BINDKIT_TOKEN\" ] && echo --insecure) $BINDKIT_SERVE_ARGS"]
