#!/usr/bin/env bash
# Prepare a Raspberry Pi (Raspberry Pi OS Bookworm, or Trixie with Python 3.13)
# to run edgepipe bundles deployed with `edgepipe deploy`. Safe to run again:
# every step checks before it changes anything.
#
#   bash pi-setup.sh                       # apt packages, venv at ~/edgepipe/venv, edgepipe[device]
#   bash pi-setup.sh --coral               # + Coral's apt repo, libedgetpu1-std, udev rule
#   bash pi-setup.sh --from ./edgepipe-0.1.0-py3-none-any.whl
#   bash pi-setup.sh --dry-run --coral     # print what it would do
#
# Options:
#   --prefix DIR    where deploys go; the venv is DIR/venv (default ~/edgepipe; `edgepipe deploy` uses it)
#   --from SPEC     what pip installs instead of edgepipe[device]: a wheel, a path or a requirement
#   --coral         Edge TPU runtime: Coral's apt repository (signed-by keyring), libedgetpu1-std, udev rule
#   --max-frequency libedgetpu1-max instead of -std (faster, the USB stick gets hot)
#   --apt-opencv    take OpenCV and numpy from apt (python3-opencv), not pip: smaller, matches picamera2
#   --no-linger     do not enable lingering (the user service then starts at login, not at boot)
#   --dry-run       print the commands, change nothing
#
# Runtime notes: edgepipe runs on ai-edge-litert (LiteRT), which has wheels for
# new Pythons and numpy 2. Picamera2 comes from apt and is built against the
# apt numpy (1.24 on Bookworm, 2.x on Trixie); the venv sees it through
# --system-site-packages, so on Bookworm pip is held to numpy<2 or Picamera2's
# compiled helpers fail to import. tflite_runtime (the legacy runtime Coral's
# examples use) needs numpy<2 and its last release has no wheels for Python
# 3.12+ (Trixie); edgepipe does not need it.
set -euo pipefail

PREFIX="${HOME}/edgepipe"
FROM="edgepipe[device]"
CORAL=0
CORAL_PACKAGE="libedgetpu1-std"
APT_OPENCV=0
LINGER=1
DRY_RUN=0
OS_RELEASE="${PI_SETUP_OS_RELEASE:-/etc/os-release}"
USER="${USER:-$(id -un)}"

CORAL_KEY_URL="https://packages.cloud.google.com/apt/doc/apt-key.gpg"
CORAL_KEYRING="/usr/share/keyrings/coral-edgetpu-archive-keyring.gpg"
CORAL_LIST="/etc/apt/sources.list.d/coral-edgetpu.list"
CORAL_REPO="deb [signed-by=${CORAL_KEYRING}] https://packages.cloud.google.com/apt coral-edgetpu-stable main"
UDEV_RULE="/etc/udev/rules.d/99-edgepipe-edgetpu.rules"
# Coral USB Accelerator before (1a6e:089a) and after (18d1:9302) the runtime loads its firmware.
UDEV_TEXT='SUBSYSTEM=="usb", ATTRS{idVendor}=="1a6e", ATTRS{idProduct}=="089a", MODE="0664", GROUP="plugdev"
SUBSYSTEM=="usb", ATTRS{idVendor}=="18d1", ATTRS{idProduct}=="9302", MODE="0664", GROUP="plugdev"'

say() { printf 'pi-setup: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# Run a command, or only print it with --dry-run.
run() {
  printf '+ %s\n' "$*"
  if [ "$DRY_RUN" -eq 0 ]; then "$@"; fi
}

# Root commands through sudo unless we are root.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then run "$@"; else run sudo "$@"; fi
}

# Write $2 to root-owned file $1 only when its content differs.
write_root_file() {
  local path="$1" text="$2"
  if [ -f "$path" ] && [ "$(cat "$path")" = "$text" ]; then
    say "$path is up to date"
    return
  fi
  printf '+ write %s\n' "$path"
  if [ "$DRY_RUN" -eq 0 ]; then
    printf '%s\n' "$text" | if [ "$(id -u)" -eq 0 ]; then tee "$path" >/dev/null; else sudo tee "$path" >/dev/null; fi
  fi
}

parse_args() {
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --prefix) [ "$#" -ge 2 ] || die "--prefix needs a directory"; PREFIX="$2"; shift ;;
      --from) [ "$#" -ge 2 ] || die "--from needs a wheel, path or requirement"; FROM="$2"; shift ;;
      --coral) CORAL=1 ;;
      --max-frequency) CORAL=1; CORAL_PACKAGE="libedgetpu1-max" ;;
      --apt-opencv) APT_OPENCV=1 ;;
      --no-linger) LINGER=0 ;;
      --dry-run) DRY_RUN=1 ;;
      -h|--help) usage; exit 0 ;;
      *) die "unknown option $1 (see --help)" ;;
    esac
    shift
  done
}

# Sets CODENAME (bookworm, trixie, ...) from os-release.
detect_os() {
  [ -r "$OS_RELEASE" ] || die "$OS_RELEASE not found: is this Raspberry Pi OS / Debian?"
  CODENAME="$(sed -n 's/^VERSION_CODENAME=//p' "$OS_RELEASE" | tr -d '"')"
  case "$CODENAME" in
    bookworm|trixie) say "Debian/Raspberry Pi OS ${CODENAME}" ;;
    *) say "warning: ${CODENAME:-unknown release} is not Bookworm or Trixie; continuing" ;;
  esac
  case "$(uname -m)" in
    aarch64|x86_64) ;;
    *) say "warning: $(uname -m): ai-edge-litert publishes 64-bit wheels only; use the 64-bit Raspberry Pi OS" ;;
  esac
}

install_apt_packages() {
  local packages=(python3-venv python3-pip python3-picamera2)
  if [ "$APT_OPENCV" -eq 1 ]; then packages+=(python3-opencv python3-numpy); fi
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
}

install_coral_runtime() {
  if [ ! -f "$CORAL_KEYRING" ]; then
    local key
    key="$(mktemp)"
    run curl -fsSL "$CORAL_KEY_URL" -o "$key"
    as_root gpg --batch --yes --dearmor -o "$CORAL_KEYRING" "$key"
    run rm -f "$key"
  else
    say "$CORAL_KEYRING exists"
  fi
  write_root_file "$CORAL_LIST" "$CORAL_REPO"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$CORAL_PACKAGE"
  write_root_file "$UDEV_RULE" "$UDEV_TEXT"
  as_root udevadm control --reload-rules
  as_root udevadm trigger
  if ! id -nG "$USER" | tr ' ' '\n' | grep -qx plugdev; then
    as_root usermod -aG plugdev "$USER"
    say "added $USER to plugdev: log out and in (or reboot) before using the Edge TPU"
  fi
}

create_venv() {
  local venv="$PREFIX/venv"
  if [ -x "$venv/bin/python" ]; then
    say "$venv exists"
  else
    run mkdir -p "$PREFIX"
    # --system-site-packages: Picamera2 and libcamera come from apt and are not on PyPI.
    run python3 -m venv --system-site-packages "$venv"
  fi
  run "$venv/bin/python" -m pip install --upgrade pip
  local constraints=()
  if [ "$CODENAME" = "bookworm" ]; then
    # Bookworm's apt Picamera2 stack is built against numpy 1.24.
    run mkdir -p "$PREFIX"
    if [ "$DRY_RUN" -eq 0 ]; then printf 'numpy<2\n' > "$PREFIX/constraints.txt"; fi
    constraints=(-c "$PREFIX/constraints.txt")
  fi
  if [ "$APT_OPENCV" -eq 1 ]; then
    # numpy and cv2 from apt (visible through system site-packages); only the runtime from pip.
    run "$venv/bin/python" -m pip install "${constraints[@]}" --no-deps "$FROM"
    run "$venv/bin/python" -m pip install "${constraints[@]}" ai-edge-litert
  else
    run "$venv/bin/python" -m pip install "${constraints[@]}" --upgrade "$FROM"
  fi
  run "$venv/bin/python" -c "import edgepipe.device.runtime, edgepipe; print('edgepipe', edgepipe.__version__, 'ready')"
}

enable_linger() {
  # A systemd user unit (edgepipe deploy's default) starts at boot only with lingering on.
  if [ "$LINGER" -eq 1 ] && command -v loginctl >/dev/null 2>&1; then
    if [ "$(loginctl show-user "$USER" -p Linger --value 2>/dev/null || true)" = "yes" ]; then
      say "lingering already enabled for $USER"
    else
      as_root loginctl enable-linger "$USER"
    fi
  fi
}

main() {
  parse_args "$@"
  detect_os
  install_apt_packages
  if [ "$CORAL" -eq 1 ]; then install_coral_runtime; fi
  create_venv
  enable_linger
  say "done: deploy with \`edgepipe deploy BUNDLE ${USER}@$(hostname)\` (it uses ${PREFIX}/venv/bin/python)"
}

main "$@"
