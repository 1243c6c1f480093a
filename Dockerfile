# MediaNest: one image, every role (`medianest serve --role ...`).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p medianest

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/medianest /usr/local/bin/medianest
USER nobody
ENTRYPOINT ["medianest"]
CMD ["serve"]
