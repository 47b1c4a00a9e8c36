# Turnpike container image.
#
#   docker build -t turnpike .
#   docker run --rm -p 8080:8080 \
#       -v $PWD/tyk.conf:/opt/tyk-gateway/tyk.conf:ro \
#       -v $PWD/apps:/opt/tyk-gateway/apps \
#       turnpike
#
# The gateway is PID 1 (exec-form ENTRYPOINT): the master reaps every child and
# handles SIGTERM itself. `docker stop` sends SIGTERM: /ready fails for
# graceful_shutdown_delay_seconds, in-flight requests finish within
# graceful_shutdown_timeout_duration, exit 0. Give `docker stop -t` (or the
# pod's terminationGracePeriodSeconds) more than the two together.

# ---- build: Debian 12 with the build dependencies (Makefile DEPS_BUILD) ----
FROM debian:12 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        gcc libc6-dev make pkg-config libuv1-dev libhiredis-dev libcjson-dev libmbedtls-dev libcrypt-dev node-llhttp duktape-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY common ./common
COPY conf ./conf
COPY shm ./shm
COPY worker ./worker
COPY master ./master
RUN make -j"$(nproc)" all \
 && make install DESTDIR=/out PREFIX=/usr/local \
 && /out/usr/local/bin/turnpike --version

# ---- runtime: debian:12-slim, the shared libraries build/turnpike links, and
# libjs-underscore (the JavaScript middleware's "_", read at run time) ----
FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        libuv1 libhiredis0.14 libcjson1 libmbedtls14 libmbedx509-1 libmbedcrypto7 libcrypt1 \
        libjs-underscore \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 turnpike \
 && useradd --system --uid 10001 --gid 10001 --home-dir /opt/tyk-gateway --no-create-home \
        --shell /usr/sbin/nologin turnpike \
 && mkdir -p /opt/tyk-gateway/apps /opt/tyk-gateway/policies \
 && echo '{}' > /opt/tyk-gateway/policies/policies.json \
 && chown -R 10001:10001 /opt/tyk-gateway/apps /opt/tyk-gateway/policies
COPY --from=build /out/usr/local/bin/turnpike /usr/local/bin/turnpike
COPY conf/tyk.opt.conf /opt/tyk-gateway/tyk.conf

# apps/ and policies/ are where /tyk/apis and /tyk/policies write; mount them
# (or ConfigMaps, read-only) to keep definitions across restarts.
WORKDIR /opt/tyk-gateway
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
# No HEALTHCHECK: debian:12-slim has no HTTP client and the orchestrator probes
# /hello (liveness) and /ready (readiness) itself.
ENTRYPOINT ["/usr/local/bin/turnpike"]
CMD ["--conf", "/opt/tyk-gateway/tyk.conf"]
