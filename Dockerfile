# bindkit serve on CPU: a drop-in for Weaviate's multi2vec-bind inference container (port 8080), plus
# OpenAI-style /v1/embeddings. Build:  docker build -t bindkit-serve .
# Weights are not baked in (imagebind_huge is ~4.5 GB, CC BY-NC 4.0): mount a folder holding
# imagebind_huge.pth or a converted imagebind_huge/ at /app/weights, or let the first start download them into
# the /home/app/.cache volume. See docs/serving.md.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# libgomp: torch's OpenMP runtime; libsndfile: soundfile (its wheel bundles one, this is the fallback)
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libsndfile1 \
 && rm -rf /var/lib/apt/lists/*

# CPU-only torch first (the default index would pull the multi-GB CUDA build); versions as in pyproject.toml
RUN pip install torch==2.9.1 torchvision==0.24.1 torchaudio==2.9.1 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY encoders ./encoders
COPY bindkit ./bindkit
COPY weights/README.md ./weights/README.md
# editable: the cards in /app/encoders and the weights in /app/weights stay where bindkit looks for them
RUN pip install -e ".[serve]"

RUN groupadd --gid 2000 app && useradd --uid 1000 --gid app --create-home app \
 && mkdir -p /home/app/.cache/bindkit && chown -R app:app /app /home/app
USER app
VOLUME ["/home/app/.cache/bindkit"]

EXPOSE 8080
# Weaviate's module sends no token, so on a private compose network the server runs without one (--insecure);
# set BINDKIT_TOKEN to require a bearer token (e.g. when the port is published). Extra options (e.g.
# "--model imagebind_huge --max-batch 16") go in BINDKIT_SERVE_ARGS.
ENV BINDKIT_SERVE_ARGS=""
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/.well-known/ready').status != 204)"
CMD ["/bin/sh", "-c", "exec bindkit serve --host 0.0.0.0 --port 8080 $([ -z \"$BINDKIT_TOKEN\" ] && echo --insecure) $BINDKIT_SERVE_ARGS"]
