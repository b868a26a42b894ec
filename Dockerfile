# syntax=docker/dockerfile:1
# Veil's container image: built on Debian bookworm with the same Debian
# packages `make` uses (scripts/deps.sh), run as an unprivileged user.
#
#   docker build -t veil:local .
#   docker run --rm -v $PWD/veil.yaml:/etc/veil/veil.yaml:ro \
#     -v $PWD/veil.key:/run/secrets/veil.key:ro veil:local
#
# The key is a file (mode 0600, owned by uid 10001), never an environment
# variable: point `keys.hmac_key_file` at /run/secrets/veil.key. The worker
# serves /metrics and /healthz on `metrics.listen`; the HEALTHCHECK expects
# port 9464 (set `metrics: { listen: 0.0.0.0:9464 }`). Hyperscan needs an
# x86-64 CPU with SSSE3, so the image is linux/amd64.

ARG DEBIAN=debian:bookworm-slim

FROM ${DEBIAN} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config ca-certificates \
      librdkafka-dev libavro-dev libhyperscan-dev \
      libjansson-dev libcurl4-openssl-dev libyaml-dev libssl-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY common common
COPY filters filters
COPY connectors connectors
COPY config/veil.example.yaml config/
COPY deploy/man deploy/man
COPY deploy/systemd deploy/systemd
RUN make -j"$(nproc)" WERROR=1 \
 && make install PREFIX=/usr DESTDIR=/out \
 && /out/usr/bin/veil --version

FROM ${DEBIAN} AS runtime
# The shared libraries build/veil links against (one per -dev package
# above), certificates for https registries, curl for the HEALTHCHECK.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      librdkafka1 libavro23 libhyperscan5 libjansson4 libcurl4 libyaml-0-2 \
      libssl3 libmicrohttpd12 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 veil \
 && useradd --system --uid 10001 --gid veil --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin veil \
 && install -d -m 0755 /etc/veil
COPY --from=build /out/usr/bin/veil /usr/bin/veil
COPY --from=build /out/usr/share/man/man1/veil.1 /usr/share/man/man1/veil.1
COPY --from=build /out/usr/share/doc/veil /usr/share/doc/veil
COPY LICENSE /usr/share/doc/veil/LICENSE
USER 10001:10001
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9464/healthz >/dev/null || exit 1
ENTRYPOINT ["/usr/bin/veil"]
CMD ["run", "-c", "/etc/veil/veil.yaml"]
