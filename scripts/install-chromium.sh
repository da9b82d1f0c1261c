#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests when /usr/bin/chromium is missing (Playwright's own browser
# downloads are not used). Needs root, as on CI; otherwise it says what to run.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "The browser tests need Debian's chromium at /usr/bin/chromium: sudo apt-get install -y chromium" >&2
  exit 1
fi
echo "installing Debian's chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
