# MediaNest: one image, every role (`medianest serve --role ...`).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p medianest

FROM debian:bookworm-slim
# yt-dlp (pinned, the version the tests run; see scripts/services.sh) and ffmpeg, which
# yt-dlp needs to merge YouTube's separate video and audio streams.
ARG YTDLP_VERSION=2026.10.26
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates ffmpeg \
        python3 python3-venv \
    && python3 -m venv /opt/yt-dlp && /opt/yt-dlp/bin/pip install --no-cache-dir "yt-dlp==${YTDLP_VERSION}" \
    && ln -s /opt/yt-dlp/bin/yt-dlp /usr/local/bin/yt-dlp \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/medianest /usr/local/bin/medianest
# glibc's allocator with a fixed mmap threshold: blocks of 1 MiB and more (argon2id's 19 MiB
# working block at each password check) go back to the system when freed. With the default,
# the threshold rises to the largest block freed and that block stays in the heap: 47 MiB
# resident when idle instead of 29. And one arena for every thread: 31 MiB resident after a
# command load instead of 35, at the same rate (docs/operations.md, "Memory").
ENV GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576:glibc.malloc.arena_max=1
USER nobody
ENTRYPOINT ["medianest"]
CMD ["serve"]
