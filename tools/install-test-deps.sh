#!/usr/bin/env bash
# Installs what the tests need beyond Maven's own dependencies: llama.cpp's CPU library (the oracle) and
# Python Jinja2 (the chat-template rendering oracle). Tests that need them skip with a message where node or
# python3-jinja2 is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
    echo "install-test-deps: installing Node.js from Debian" >&2
    (apt-get update -qq && apt-get install -y -qq nodejs npm) >&2 || echo "install-test-deps: could not install node" >&2
  fi
fi
if ! python3 -c 'import jinja2' >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
    echo "install-test-deps: installing python3-jinja2 from Debian" >&2
    (apt-get update -qq && apt-get install -y -qq python3-jinja2) >&2 || echo "install-test-deps: could not install python3-jinja2" >&2
  fi
fi
tools/oracle/install.sh
