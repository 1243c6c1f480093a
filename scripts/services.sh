# Sourced by scripts/test and scripts/dev: makes sure PostgreSQL and NATS (with JetStream)
# listen on 127.0.0.1:5432 and 127.0.0.1:4222, starting them, or installing them from
# Debian's packages, where they are missing. Exports MEDIANEST_TEST_DATABASE_URL.

log() { printf '[services] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*"; return 1; fi
}

apt_install() {
  log "installing $* from Debian packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  log "nothing listens on 127.0.0.1:$1"; return 1
}

ensure_postgres() {
  if ! port_open 5432; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$version" ]; then log "no PostgreSQL cluster found"; return 1; fi
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_port 5432
  fi
  local url=${MEDIANEST_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  if ! psql "$url" -qAtc 'SELECT 1' >/dev/null 2>&1; then
    # A fresh Debian install asks for a password over TCP: give postgres one.
    log "setting a password for the postgres role"
    as_root su postgres -c "psql -qc \"ALTER ROLE postgres PASSWORD 'postgres'\"" >/dev/null
    url=postgres://postgres:postgres@127.0.0.1:5432/postgres
    psql "$url" -qAtc 'SELECT 1' >/dev/null
  fi
  export MEDIANEST_TEST_DATABASE_URL=$url
}

ensure_nats() {
  if port_open 4222; then return 0; fi
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || apt_install nats-server
  local bin
  bin=$(command -v nats-server || echo /usr/sbin/nats-server)
  local dir=${MEDIANEST_NATS_STORE:-/tmp/medianest-nats}
  mkdir -p "$dir"
  log "starting NATS with JetStream ($dir)"
  nohup "$bin" -a 127.0.0.1 -p 4222 -js -sd "$dir" >"$dir/nats.log" 2>&1 &
  wait_port 4222
}

# The yt-dlp version the tests (and the Dockerfile) use; bump both together.
YTDLP_VERSION=2026.10.26

# Puts yt-dlp $YTDLP_VERSION on PATH: the one already there if it is that version, else one
# installed from PyPI into a virtualenv under target/tools (python3 -m venv; with plain pip
# into the user's site when venv is unavailable). ffmpeg is not needed by the tests.
# wrk (Debian's package), which the benchmark harness's `serve` section drives MediaNest with
# (its smoke run is part of the test suite); pgbench comes with PostgreSQL.
ensure_wrk() {
  command -v wrk >/dev/null || apt_install wrk
}

ensure_ytdlp() {
  if command -v yt-dlp >/dev/null && [ "$(yt-dlp --version 2>/dev/null)" = "$YTDLP_VERSION" ]; then
    return 0
  fi
  local venv
  venv="$(pwd)/target/tools/yt-dlp-$YTDLP_VERSION"
  if [ ! -x "$venv/bin/yt-dlp" ]; then
    log "installing yt-dlp $YTDLP_VERSION from PyPI into $venv"
    if python3 -m venv "$venv" >/dev/null 2>&1; then
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "yt-dlp==$YTDLP_VERSION"
    else
      rm -rf "$venv"
      python3 -m pip install --quiet --user --disable-pip-version-check "yt-dlp==$YTDLP_VERSION"
      export PATH="$HOME/.local/bin:$PATH"
      return 0
    fi
  fi
  export PATH="$venv/bin:$PATH"
}

# The schemathesis version the tests use (testkit/tests/e2e/bad_input/schemathesis.rs drives its CLI).
SCHEMATHESIS_VERSION=4.32.5

# Puts schemathesis $SCHEMATHESIS_VERSION (`schemathesis`, `st`) on PATH: the one already there
# if it is that version, else one installed from PyPI into a virtualenv under target/tools
# (python3 -m venv; with plain pip into the user's site when venv is unavailable).
ensure_schemathesis() {
  if command -v schemathesis >/dev/null \
    && [ "$(schemathesis --version 2>/dev/null | awk '{print $NF}')" = "$SCHEMATHESIS_VERSION" ]; then
    return 0
  fi
  local venv
  venv="$(pwd)/target/tools/schemathesis-$SCHEMATHESIS_VERSION"
  if [ ! -x "$venv/bin/schemathesis" ]; then
    log "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $venv"
    if python3 -m venv "$venv" >/dev/null 2>&1; then
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION"
    else
      rm -rf "$venv"
      python3 -m pip install --quiet --user --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION"
      export PATH="$HOME/.local/bin:$PATH"
      return 0
    fi
  fi
  export PATH="$venv/bin:$PATH"
}

# The third-party contracts the simulators and contract tests follow (docs/design.md §6): not
# MediaNest's files, so not in the repository. Pinned to an upstream version (Overseerr by its
# release tag; the Plex document, whose repository has no tags, by the commit of the file's
# last change, version 1.1.1) and its SHA-256; bump a version and its checksum together.
OVERSEERR_API_TAG=v1.34.0
OVERSEERR_API_SHA256=3e8d7697ba09301be30aac2f8eb23ba938118ef9286741db3613698d1479b589
PLEX_API_SPEC_COMMIT=3a0b3ddae722ba3f6a0f6714ddb3df06b8093b3c
PLEX_API_SPEC_SHA256=abdee838921b426b28ca0bbb88a22563a570992cfd045bef46b61a68d475edbc

# Checks that the contracts directory, ${MEDIANEST_CONTRACTS_DIR:-../shared/contracts} (a
# relative path is taken from the repository root), holds each contract with its pinned
# checksum, and exports MEDIANEST_CONTRACTS_DIR as an absolute path for the tests. Otherwise
# says which file to put where, from where, and stops: the simulators would fail later and
# less clearly.
ensure_contracts() {
  local root dir ok=1
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  dir=${MEDIANEST_CONTRACTS_DIR:-../shared/contracts}
  case $dir in /*) ;; *) dir="$root/$dir" ;; esac
  [ -d "$dir" ] && dir=$(cd "$dir" && pwd)
  contract_present "$dir" overseerr-api.yml "$OVERSEERR_API_SHA256" \
    "https://raw.githubusercontent.com/sct/overseerr/$OVERSEERR_API_TAG/overseerr-api.yml" \
    "Overseerr's OpenAPI document, sct/overseerr release $OVERSEERR_API_TAG (MIT)" || ok=0
  contract_present "$dir" plex-media-server.yaml "$PLEX_API_SPEC_SHA256" \
    "https://raw.githubusercontent.com/LukeHagar/plex-api-spec/$PLEX_API_SPEC_COMMIT/plex-api-spec.yaml" \
    "Plex Media Server's community OpenAPI document, LukeHagar/plex-api-spec 1.1.1 (commit $PLEX_API_SPEC_COMMIT), plex-api-spec.yaml renamed (Apache-2.0)" \
    || ok=0
  if [ "$ok" -eq 0 ]; then
    log "the contracts directory is MEDIANEST_CONTRACTS_DIR (default ../shared/contracts" \
      "beside the repository); see docs/operations.md, \"Tests\""
    exit 1
  fi
  export MEDIANEST_CONTRACTS_DIR=$dir
}

# contract_present DIR FILE SHA256 URL WHAT: whether DIR/FILE exists with that checksum; if not,
# says what to put there and how to fetch it.
contract_present() {
  local dir=$1 file=$2 sum=$3 url=$4 what=$5 actual
  if [ ! -f "$dir/$file" ]; then
    log "contract missing: $dir/$file"
  else
    actual=$(sha256sum "$dir/$file" | cut -d ' ' -f 1)
    [ "$actual" = "$sum" ] && return 0
    log "contract differs from the pinned version: $dir/$file (sha256 $actual)"
  fi
  log "  put there $what:"
  [ -d "$dir" ] || log "    mkdir -p '$dir'"
  log "    curl -fsSL -o '$dir/$file' $url"
  log "  expected sha256: $sum"
  return 1
}
