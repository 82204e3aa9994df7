# A HeTu server image: put your app and config.yml in /app (or mount them) and run it.
#   docker build -t hetu .
#   docker run -p 2466:2466 -v "$PWD/examples/chat/server:/app" hetu
FROM python:3.11-slim

WORKDIR /opt/hetu
COPY pyproject.toml README.md ./
COPY hetu ./hetu
RUN pip install --no-cache-dir . && rm -rf /opt/hetu

WORKDIR /app
EXPOSE 2466
STOPSIGNAL SIGTERM
# config.yml in /app names the app file, the database and everything else
CMD ["hetu", "start", "--config=/app/config.yml"]
