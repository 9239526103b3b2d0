#!/usr/bin/env bash
# The one entry point for working on hub-mirror-bot (README and CI call this, nothing else).
#
#   bash scripts/dev.sh setup          Debian tools if missing, .venv, editable install
#   bash scripts/dev.sh test [ARGS]    setup, ruff, mypy, pytest ARGS (a lab per xdist worker)
#   bash scripts/dev.sh demo           setup, start and seed the lab in .lab, run the bot
#   bash scripts/dev.sh lab CMD        scripts/lab.py CMD (up|seed|env|down) with the venv python
#   bash scripts/dev.sh lock           regenerate requirements.lock (hashed pins the image installs,
#                                      the chat platforms' extras included)
#   bash scripts/dev.sh i18n           extract the sentences users read, update bot/locale/*.po
#   bash scripts/dev.sh docs           rewrite the command lists built from bot/commands
#
# Every step is idempotent: a second run only checks.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv
PY=$VENV/bin/python
STAMP=$VENV/.dev-installed
LAB_ROOT=.lab
APT_PACKAGES=(docker.io docker-registry skopeo apache2-utils tinyproxy postgresql)

log() { printf '>> %s\n' "$*" >&2; }
die() { printf 'dev.sh: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

have() {
  # dockerd lives in /usr/sbin, which is not on a normal user's PATH.
  PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1
}

setup_system() {
  local packages=() tool
  for tool in dockerd docker-registry skopeo htpasswd tinyproxy; do
    if ! have "$tool"; then
      packages=("${APT_PACKAGES[@]}")
      break
    fi
  done
  # The tests' PostgreSQL (scripts/lab.py): Debian keeps its server out of PATH.
  if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    packages=("${APT_PACKAGES[@]}")
  fi
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1 && [[ ! -x $PY ]]; then
    packages+=(python3-venv)  # Debian splits venv/ensurepip out of python3
  fi
  if ((${#packages[@]})); then
    log "installing Debian packages: ${packages[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
  fi
}

setup_python() {
  if [[ ! -x $PY ]]; then
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || die "python3 is $(python3 -V 2>&1); hub-mirror-bot needs 3.11+"
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [[ ! -f $STAMP || $(cat "$STAMP") != "$want" ]]; then
    log "installing hub-mirror-bot and dev dependencies into $VENV"
    "$PY" -m pip install -q -e '.[dev,feishu,dingtalk]'
    printf '%s\n' "$want" >"$STAMP"
  fi
}

setup() {
  setup_system
  setup_python
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
  setup)
    setup
    ;;
  test)
    setup
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check bot mirror adapters tests scripts bench
    "$VENV/bin/mypy"
    # pytest-xdist, three workers per CPU: most of a test's time is waiting (chat pacing,
    # copies through slow relays, restarts), not computing. Each worker starts its own lab;
    # tests sharing a module's fixture stay together (tests/support/scheduling.py). `-n 0`
    # after `test` runs them in this process, one by one; TEST_WORKERS=N sets the number.
    "$PY" -m pytest -q -p no:cacheprovider -n "${TEST_WORKERS:-$(($(nproc) * 3))}" \
      --dist loadgroup "$@"
    ;;
  demo)
    setup
    "$PY" scripts/lab.py up --root "$LAB_ROOT" >/dev/null
    "$PY" scripts/lab.py seed --root "$LAB_ROOT"
    # shellcheck source=/dev/null
    source "$LAB_ROOT/env"
    export MIRROR_DB=${MIRROR_DB:-$PWD/$LAB_ROOT/mirror.db}
    cat <<EOF

  hub-mirror-bot demo: a local Docker daemon and registries are running (settings: $LAB_ROOT/env).
  Try:   /mirror $LAB_SOURCE/library/hello:1.0
         /mirror $LAB_SOURCE/library/multi:1.0
  Then:  docker -H $DOCKER_HOST pull $MIRROR_TARGET/...
  Stop the lab afterwards: bash scripts/dev.sh lab down

EOF
    exec "$VENV/bin/mirror-bot" run
    ;;
  lab)
    [[ -x $PY ]] || setup
    exec "$PY" scripts/lab.py "$@"
    ;;
  lock)
    # From PyPI alone, whatever pip.conf this machine has, so the hashes are PyPI's files'.
    # The chat platforms' extras too (not dev): the image carries every platform.
    setup
    env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
      CUSTOM_COMPILE_COMMAND="bash scripts/dev.sh lock" \
      "$VENV/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --all-build-deps \
      --strip-extras --no-emit-index-url --no-emit-find-links --output-file requirements.lock \
      --extra dingtalk --extra feishu "$@" pyproject.toml
    ;;
  i18n)
    # Then translate the new (empty) and fuzzy entries of bot/locale/zh_Hans (docs/architecture.md).
    setup
    "$PY" scripts/i18n.py update
    ;;
  docs)
    # docs/commands.md's table and slack-app-manifest.yml's usage_hint (scripts/docs.py).
    setup
    "$PY" scripts/docs.py update
    ;;
  *)
    sed -n '2,11s/^# \{0,1\}//p' "$0" >&2
    exit 2
    ;;
esac
