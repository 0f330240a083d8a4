# syntax=docker/dockerfile:1.7
#
# statsbridge in a container: a static binary on distroless, run as a
# non-root user, with a configuration that listens on every interface (a
# container's loopback cannot be reached from outside it).
#
#   docker build -t statsbridge .
#   docker run -p 8125:8125/udp -p 8125:8125/tcp -p 9102:9102 statsbridge
#
# To change anything, mount your own file over the one below:
#   docker run -v ./statsbridge.toml:/etc/statsbridge/statsbridge.toml:ro ...

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The same build CI runs (build.sh): static, no cgo, trimmed paths.
RUN ./build.sh /out/statsbridge

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/statsbridge /usr/local/bin/statsbridge
COPY <<'EOF' /etc/statsbridge/statsbridge.toml
# statsbridge's container configuration. Every other key keeps its default
# (see config.example.toml).
[statsd]
udp = ["0.0.0.0:8125"]
tcp = ["0.0.0.0:8125"]

[http]
listen = "0.0.0.0:9102"
# Who may read /metrics: loopback and the private ranges container networks
# use. Scraped through a proxy? List it in trusted_proxies. Reachable from
# the internet? Narrow this to your Prometheus' address.
allow = ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
EOF
USER nonroot:nonroot
EXPOSE 8125/udp 8125/tcp 9102/tcp
ENTRYPOINT ["/usr/local/bin/statsbridge"]
CMD ["run", "--config", "/etc/statsbridge/statsbridge.toml"]
