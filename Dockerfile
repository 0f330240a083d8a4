# statsbridge in a container: a static binary on distroless, run as a
# non-root user, listening on every interface (a container's loopback
# cannot be reached from outside it). It builds with BuildKit and with the
# classic builder alike.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t statsbridge .
#   docker run -p 8125:8125/udp -p 8125:8125/tcp -p 9102:9102 statsbridge
#
# To configure it, mount your own file over the one below:
#   docker run -v ./statsbridge.toml:/etc/statsbridge/statsbridge.toml:ro ...
# and a volume for the sinks' spools (spool_dir = "/var/lib/statsbridge/spool"):
#   docker run -v statsbridge-spool:/var/lib/statsbridge ...

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# The same build CI runs (build.sh): static, no cgo, trimmed paths.
RUN VERSION="$VERSION" ./build.sh /out/statsbridge && mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/statsbridge /usr/local/bin/statsbridge
COPY examples/container/statsbridge.toml /etc/statsbridge/statsbridge.toml
# The spool's place, owned by nonroot (65532), so that a volume mounted
# there is too.
COPY --from=build --chown=65532:65532 /out/state /var/lib/statsbridge
# The listeners come from the environment, which wins over the file: a
# file of your own cannot put them back on the container's loopback.
# Change them with -e; an empty value turns one off. The configuration
# file is named here too, for run and for healthcheck.
ENV STATSBRIDGE_CONFIG=/etc/statsbridge/statsbridge.toml \
    STATSBRIDGE_STATSD_UDP=0.0.0.0:8125 \
    STATSBRIDGE_STATSD_TCP=0.0.0.0:8125 \
    STATSBRIDGE_HTTP_LISTEN=0.0.0.0:9102
USER nonroot:nonroot
EXPOSE 8125/udp 8125/tcp 9102/tcp
# The image has no curl: statsbridge asks its own /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/statsbridge", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/statsbridge"]
CMD ["run"]
