# The `cerberus` gateway: built in a Rust image, run in a small Debian one as an unprivileged user.
#
#   docker build -t cerberus .
#   docker run -p 8080:8080 -v "$PWD/deploy/gateway.toml:/etc/cerberus/gateway.toml:ro" cerberus
#
# Settings come from the mounted file and CERBERUS_<SECTION>__<KEY> variables (`cerberus serve --help`).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p cerberus-axum --bin cerberus \
    && cp target/release/cerberus /usr/local/bin/cerberus

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/cerberus --create-home cerberus
COPY --from=build /usr/local/bin/cerberus /usr/local/bin/cerberus
COPY deploy/gateway.toml /etc/cerberus/gateway.toml
USER cerberus
WORKDIR /var/lib/cerberus
# mimalloc returns freed memory to the system at once rather than after a delay: flat memory under
# large answers, at no measurable cost per call (docs/benchmarks.md, "Memory under large answers").
ENV MIMALLOC_PURGE_DELAY=0 \
    CERBERUS_SERVER__LISTEN=0.0.0.0:8080 \
    CERBERUS_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["cerberus"]
CMD ["serve", "--config", "/etc/cerberus/gateway.toml"]
