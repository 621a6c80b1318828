#!/usr/bin/env bash
# test_fakequant_torch.sh: nibble's fake-quant forward/backward against torch's
# fake_quantize_per_channel_affine and learnable (LSQ) fake-quant, through tests/fakequant_torch.py.
# Skips (77) when /usr/bin/python3 has no torch or the shared library is not built.
set -u
if [[ "${NB_SANITIZE:-0}" == 1 ]]; then
  echo "SKIP: python cannot load a sanitizer-built libnibble.so (the release run covers this test)"
  exit 77
fi
root=${NB_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
py=/usr/bin/python3
[[ -x $py ]] || py=$(command -v python3 || true)
if [[ -z $py ]] || ! "$py" -c "import torch" 2>/dev/null; then
  echo "SKIP: torch is not installed for ${py:-python3} (Debian: apt install python3-torch)"
  exit 77
fi
lib=""
[[ -n ${NIBBLE:-} ]] && lib=$(dirname "$NIBBLE")/libnibble.so
if [[ ! -f $lib ]]; then
  echo "SKIP: libnibble.so not found next to \$NIBBLE (${NIBBLE:-unset})"
  exit 77
fi
exec "$py" "$root/tests/fakequant_torch.py" "$lib"
