#!/usr/bin/env bash
# Re-create the example clips: short English sentences spoken by espeak-ng, converted
# by sox to 16 kHz mono 16-bit WAV (the model's input format). Synthesized here, so the
# repository holds no third-party recordings. Needs: espeak-ng, sox (make system-deps).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# name | espeak-ng voice | words per minute | pitch (0-99) | sentence
while IFS='|' read -r name voice speed pitch text; do
  espeak-ng -v "$voice" -s "$speed" -p "$pitch" -w "$tmp/$name.wav" "$text"
  sox "$tmp/$name.wav" -r 16000 -c 1 -b 16 "$name.wav" norm -3
  echo "examples/$name.wav: $(soxi -D "$name.wav") s"
done <<'LIST'
we-won|en-us|190|70|We did it! I can't believe we actually won the game!
leave-me-alone|en-gb|150|35|Leave me alone. I told you not to touch my things.
long-day|en-us|120|25|It has been a very long day, and I just want to sleep.
LIST
