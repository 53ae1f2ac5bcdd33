#!/usr/bin/env bash
# Headless Chromium for the scoring page's browser test (src/rollout_recorder/tests/test_scoring_browser.py):
# Debian's `chromium` + the matching `chromium-driver` (same source package, so versions always agree), and
# Selenium in the venv, pointed at /usr/bin/chromedriver so that Selenium Manager never tries a download.
# Idempotent: each part is skipped when already present; a re-run takes about a second.
# Needs root (or sudo) and apt only when Chromium is missing. Called by scripts/setup.sh after the venv exists.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VPY="${VPY:-$ROOT/.venv/bin/python}"
# 4.52.0 needs certifi >= 2026.10.23, not yet on every package mirror
SELENIUM_SPEC="${SELENIUM_SPEC:-selenium==4.51.0}"

say() { printf '\033[1m[setup_browser]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup_browser] error:\033[0m %s\n' "$*" >&2; exit 1; }

[ -x "$VPY" ] || die "$VPY not found: run scripts/setup.sh first (it creates the venv)"
if [ "${SETUP_BROWSER:-1}" = 0 ]; then
  say "skipped (SETUP_BROWSER=0): test_scoring_browser.py will fail until this script has run"
  exit 0
fi

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  say "Chromium present: $(chromium --version 2>/dev/null | head -1)"
else
  command -v apt-get >/dev/null || die "Chromium missing and no apt-get: install chromium and its chromedriver (same version) yourself"
  SUDO=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "Chromium missing: run as root, or: sudo apt-get install chromium chromium-driver"
    SUDO=(sudo)
  fi
  say "installing chromium + chromium-driver from apt (first run: ~1-3 min, ~300 MB)"
  start=$(date +%s)
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-liberation >/dev/null
  say "installed in $(( $(date +%s) - start )) s: $(chromium --version 2>/dev/null | head -1)"
fi

want="${SELENIUM_SPEC#*==}"
have=$("$VPY" -c 'import importlib.metadata as m; print(m.version("selenium"))' 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  say "installing $SELENIUM_SPEC into the venv"
  "$VPY" -m pip install --quiet "$SELENIUM_SPEC"
else
  say "selenium $have present"
fi
say "ready: /usr/bin/chromium, /usr/bin/chromedriver, selenium $want"
