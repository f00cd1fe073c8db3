# callrec and its lab tools in one image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p callrec -p callrec-sim

FROM debian:bookworm-slim
# curl: the lab's seed step and health checks (`curl -fsS 127.0.0.1:8000/healthz`).
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --home /var/lib/callrec callrec && mkdir -p /var/lib/callrec && chown callrec /var/lib/callrec
COPY --from=build /src/target/release/callrec /usr/local/bin/callrec
COPY --from=build /src/target/release/callrec-lab /usr/local/bin/callrec-lab
USER callrec
EXPOSE 8084
ENTRYPOINT ["callrec"]
CMD ["serve", "--listen", "0.0.0.0:8084", "--data-dir", "/var/lib/callrec"]
