# One image for the page server, the uploads server and the workers; only the command differs
# (docker-compose.yml: web = gunicorn, uploads = the same gunicorn at a lower CPU weight,
# worker-* = `tutti worker`, beat). nginx in front is the official nginx image with
# portal/proxy.conf.template; it reads the media volume to send files by X-Accel-Redirect.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# Names in every script: the Noto fonts, and FriBiDi for Pillow's raqm text layout.
RUN apt-get update && apt-get install -y --no-install-recommends fonts-noto-core fonts-noto-cjk \
    fonts-noto-color-emoji libfribidi0 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY portal ./portal
COPY workers ./workers
COPY templates ./templates
COPY static ./static
RUN pip install -e . && useradd --create-home tutti && mkdir -p /data/media /data/instance \
    && chown -R tutti /data
USER tutti
ENV TUTTI_INSTANCE=/data/instance TUTTI_MEDIA_ROOT=/data/media
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=5)"
CMD ["gunicorn", "-c", "python:portal.gunicorn_conf", "portal:create_app()"]
