#!/usr/bin/env bash
# System tools that do not come from PyPI: OpenSTA (`sta`, timing and power) and z3 (formal).
# Installed from Debian when missing and apt-get works; otherwise say what needs them.
set -u
missing=()
command -v sta >/dev/null 2>&1 || missing+=(opensta)
command -v z3 >/dev/null 2>&1 || missing+=(z3)
# Verilator's FST wave writer (WAVES=1) needs lz4's headers.
[ -f /usr/include/lz4.h ] || missing+=(liblz4-dev)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} from Debian"
    if apt-get update -qq >/dev/null 2>&1 && \
       DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
        exit 0
    fi
fi
echo "setup: WARNING: could not install ${missing[*]}." >&2
echo "  without opensta (sta): 'spikemllm synth --target sky130' skips timing and power." >&2
echo "  without z3: 'make formal' cannot prove the RTL properties." >&2
echo "  without liblz4-dev: WAVES=1 cosim runs write VCD instead of FST." >&2
exit 0
