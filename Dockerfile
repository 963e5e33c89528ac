# sfwd in a container: `docker compose up` (docker-compose.yml) builds it.
#
# The builder links RocksDB and Snappy from Debian's packages instead of
# compiling RocksDB's C++ sources (README, "Building"); the runtime stage
# holds the binary and the shared libraries it needs, nothing else.

FROM rust:1.95-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      librocksdb-dev libsnappy-dev libclang-dev cmake libcurl4-openssl-dev libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN multiarch="$(gcc -print-multiarch)" \
 && export ROCKSDB_LIB_DIR="/usr/lib/$multiarch" SNAPPY_LIB_DIR="/usr/lib/$multiarch" \
 && cargo build --release --locked --bin sfwd \
 && install -m 0755 target/release/sfwd /usr/local/bin/sfwd

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends librocksdb7.8 libsnappy1v5 libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/sfwd sfwd
COPY --from=builder /usr/local/bin/sfwd /usr/local/bin/sfwd
USER sfwd
# `sfwd run` keeps its local store under .sfwd/<application>/<instance id>.
WORKDIR /var/lib/sfwd
# 9464: the admin HTTP server of `sfwd run`; 8080: `sfwd target-sim`.
EXPOSE 9464 8080
ENTRYPOINT ["sfwd"]
CMD ["--help"]
