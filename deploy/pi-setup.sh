#!/usr/bin/env bash
# Prepare a Raspberry Pi (Raspberry Pi OS Bookworm, or Trixie with Python 3.13;
# Debian or Ubuntu arm64 work too, without Picamera2) to run edgepipe bundles
# deployed with `edgepipe deploy`. Safe to run again: every step checks before
# it changes anything. Without a terminal (as `edgepipe deploy setup` runs it)
# it never prompts: root steps use `sudo -n`, and when sudo wants a password it
# prints the command to run by hand.
# `edgepipe deploy setup HOST` copies this script and a wheel of the
# workstation's edgepipe to the device and runs it there.
#
#   bash pi-setup.sh                       # apt packages, venv at ~/edgepipe/venv, edgepipe[device]
#   bash pi-setup.sh --coral               # + Coral's apt repo, libedgetpu1-std, udev rule
#   bash pi-setup.sh --from ./edgepipe-VERSION-py3-none-any.whl
#   bash pi-setup.sh --dry-run --coral     # print what it would do
#
# Options:
#   --prefix DIR    where deploys go; the venv is DIR/venv (default ~/edgepipe; `edgepipe deploy` uses it)
#   --from SPEC     what pip installs instead of edgepipe[device]: a wheel, a path or a requirement
#   --imx500        Raspberry Pi AI Camera: imx500-all and imx500-tools from Raspberry Pi OS's repository
#   --coral         Edge TPU runtime: Coral's apt repository (signed-by keyring), libedgetpu1-std, udev rule
#   --max-frequency libedgetpu1-max instead of -std (faster, the USB stick gets hot)
#   --apt-opencv    take OpenCV and numpy from apt (python3-opencv), not pip: smaller, matches picamera2
#   --no-apt        install no apt packages (python3-venv must be there already)
#   --no-linger     do not enable lingering (the user service then starts at login, not at boot)
#   --dry-run       print the commands, change nothing
#
# Runtime notes: edgepipe runs on ai-edge-litert (LiteRT), which has wheels for
# new Pythons and numpy 2. Picamera2 comes from apt and is built against the
# apt numpy (1.24 on Bookworm, 2.x on Trixie); the venv sees it through
# --system-site-packages, so on Bookworm pip is held to numpy<2 or Picamera2's
# compiled helpers fail to import. tflite_runtime (the legacy runtime Coral's
# examples use) needs numpy<2 and its last release has no wheels for Python
# 3.12+ (Trixie); edgepipe does not need it. OpenCV >= 4.12 needs numpy 2, so
# on Bookworm it is held below 4.12 with numpy (else pip backtracks through
# five OpenCV releases, ~200 MB of downloads on a Pi).
set -euo pipefail

PREFIX="${HOME}/edgepipe"
FROM="edgepipe[device]"
CORAL=0
IMX500=0
CORAL_PACKAGE="libedgetpu1-std"
APT_OPENCV=0
APT=1
LINGER=1
DRY_RUN=0
OS_RELEASE="${PI_SETUP_OS_RELEASE:-/etc/os-release}"
APT_SOURCES="${PI_SETUP_APT_SOURCES:-/etc/apt}"
USER="${USER:-$(id -un)}"

# Coral's own apt repository (libedgetpu lives nowhere else); PI_SETUP_CORAL_APT points at a mirror of it.
CORAL_APT="${PI_SETUP_CORAL_APT:-https://packages.cloud.google.com/apt}"
CORAL_KEY_URL="${CORAL_APT}/doc/apt-key.gpg"
CORAL_KEYRING="/usr/share/keyrings/coral-edgetpu-archive-keyring.gpg"
CORAL_LIST="/etc/apt/sources.list.d/coral-edgetpu.list"
CORAL_REPO="deb [signed-by=${CORAL_KEYRING}] ${CORAL_APT} coral-edgetpu-stable main"
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

# sudo may ask for a password only when someone is at a terminal to type it.
if [ -t 0 ]; then SUDO=(sudo); else SUDO=(sudo -n); fi

# Whether root commands can run: as root, with a terminal, or with passwordless sudo.
can_root() {
  [ "$(id -u)" -eq 0 ] || [ -t 0 ] || sudo -n true 2>/dev/null
}

# Root commands through sudo unless we are root; with --dry-run only printed.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then run "$@"; else run "${SUDO[@]}" "$@"; fi
}

# Stop with what to do by hand ($1) when root steps cannot run without a password prompt.
need_root() {
  if [ "$DRY_RUN" -eq 0 ] && ! can_root; then
    die "root steps need sudo, which wants a password here: $1"
  fi
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
    printf '%s\n' "$text" | if [ "$(id -u)" -eq 0 ]; then tee "$path" >/dev/null; else "${SUDO[@]}" tee "$path" >/dev/null; fi
  fi
}

parse_args() {
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --prefix) [ "$#" -ge 2 ] || die "--prefix needs a directory"; PREFIX="$2"; shift ;;
      --from) [ "$#" -ge 2 ] || die "--from needs a wheel, path or requirement"; FROM="$2"; shift ;;
      --coral) CORAL=1 ;;
      --imx500) IMX500=1 ;;
      --max-frequency) CORAL=1; CORAL_PACKAGE="libedgetpu1-max" ;;
      --apt-opencv) APT_OPENCV=1 ;;
      --no-apt) APT=0 ;;
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

installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

# Whether apt can install $1 (python3-picamera2 is only in Raspberry Pi OS's repository).
available() {
  [ -n "$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)' || true)" ]
}

# Whether apt is configured for Raspberry Pi OS's own repository (where python3-picamera2 lives):
# Raspberry Pi OS names its source file raspi.list (raspi.sources once converted to deb822).
raspberrypi_repository() {
  [ -s "$APT_SOURCES/sources.list.d/raspi.list" ] || [ -s "$APT_SOURCES/sources.list.d/raspi.sources" ]
}

PICAMERA2_ABSENT="python3-picamera2 is not in this system's apt sources (it comes from Raspberry Pi OS's"
PICAMERA2_ABSENT+=" repository): carrying on without the Pi camera module; USB cameras (/dev/video*),"
PICAMERA2_ABSENT+=" video files and streams work"

install_apt_packages() {
  local missing=() package
  local wanted=(python3-venv)  # the venv brings its own pip (ensurepip)
  if [ "$APT_OPENCV" -eq 1 ]; then wanted+=(python3-opencv python3-numpy); fi
  for package in "${wanted[@]}"; do installed "$package" || missing+=("$package"); done
  local picamera2=0
  installed python3-picamera2 || picamera2=1
  if [ "$picamera2" -eq 1 ] && ! available python3-picamera2 && ! raspberrypi_repository; then
    say "$PICAMERA2_ABSENT"  # no need to refresh apt's lists for it
    picamera2=0
  fi
  if [ "${#missing[@]}" -eq 0 ] && [ "$picamera2" -eq 0 ]; then
    say "apt packages are installed: ${wanted[*]}"
    return
  fi
  if [ "$DRY_RUN" -eq 0 ] && ! can_root; then
    if [ "${#missing[@]}" -gt 0 ]; then
      need_root "run \`sudo apt-get install -y --no-install-recommends ${missing[*]}\` on the device, then run this again"
    fi
    say "python3-picamera2 is not installed and sudo needs a password: on Raspberry Pi OS run" \
      "\`sudo apt-get install -y python3-picamera2\` for the Pi camera; carrying on (USB cameras and files work)"
    return
  fi
  as_root apt-get update
  if [ "$picamera2" -eq 1 ]; then
    if [ "$DRY_RUN" -eq 1 ] || available python3-picamera2; then
      missing+=(python3-picamera2)
    else
      say "$PICAMERA2_ABSENT"
    fi
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  fi
}

# The Raspberry Pi AI Camera (Sony IMX500): its firmware and models (imx500-all) and imx500-package
# (imx500-tools), which turns a bundle's packerOut.zip into the network.rpk Picamera2 loads.
# Both come only from Raspberry Pi OS's repository.
install_imx500_packages() {
  local missing=() package
  for package in imx500-all imx500-tools; do installed "$package" || missing+=("$package"); done
  if [ "${#missing[@]}" -eq 0 ]; then say "imx500-all and imx500-tools are installed"; return; fi
  if ! raspberrypi_repository && ! available imx500-tools; then
    die "imx500-all and imx500-tools come from Raspberry Pi OS's repository, which this system's apt does not use: the AI Camera needs Raspberry Pi OS"
  fi
  need_root "run \`sudo apt-get install -y ${missing[*]}\` on the device, then run this again"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  say "installed ${missing[*]}: reboot once so the IMX500 firmware loads"
}

install_coral_runtime() {
  need_root "run this script with --coral in a terminal on the device (ssh -t HOST)"
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
    if [ "$DRY_RUN" -eq 0 ]; then
      say "added $USER to plugdev: log out and in (or reboot) before using the Edge TPU"
    else
      say "would add $USER to plugdev"
    fi
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
    # Bookworm's apt Picamera2 stack is built against numpy 1.24; OpenCV >= 4.12 needs numpy 2.
    run mkdir -p "$PREFIX"
    printf '+ write %s\n' "$PREFIX/constraints.txt"
    if [ "$DRY_RUN" -eq 0 ]; then printf 'numpy<2\nopencv-python-headless<4.12\n' > "$PREFIX/constraints.txt"; fi
    constraints=(-c "$PREFIX/constraints.txt")
  fi
  local spec="$FROM"
  # A wheel file brings the device extra; the same version built again replaces the installed one.
  case "$FROM" in *.whl) spec="${FROM}[device]" ;; esac
  if [ "$APT_OPENCV" -eq 1 ]; then
    # numpy and cv2 from apt (visible through system site-packages); only the runtime from pip.
    run "$venv/bin/python" -m pip install "${constraints[@]}" --no-deps "$FROM"
    run "$venv/bin/python" -m pip install "${constraints[@]}" ai-edge-litert tflite flatbuffers
  else
    run "$venv/bin/python" -m pip install "${constraints[@]}" --upgrade "$spec"
  fi
  case "$FROM" in *.whl) run "$venv/bin/python" -m pip install --no-deps --force-reinstall "$FROM" ;; esac
  run "$venv/bin/python" -c "import edgepipe.device.model.classifier, edgepipe; print('edgepipe', edgepipe.__version__, 'ready')"
}

enable_linger() {
  # A systemd user unit (edgepipe deploy's default) starts at boot only with lingering on.
  if [ "$LINGER" -eq 1 ] && command -v loginctl >/dev/null 2>&1; then
    if [ "$(loginctl show-user "$USER" -p Linger --value 2>/dev/null || true)" = "yes" ]; then
      say "lingering already enabled for $USER"
    else
      if [ "$DRY_RUN" -eq 1 ] || can_root; then
        as_root loginctl enable-linger "$USER" \
          || say "warning: could not enable lingering (is systemd running?); the user service starts at login"
      else
        say "warning: lingering is off and sudo needs a password; run \`sudo loginctl enable-linger $USER\`" \
          "so the service starts at boot"
      fi
    fi
  fi
}

main() {
  parse_args "$@"
  detect_os
  if [ "$APT" -eq 1 ]; then install_apt_packages; else say "--no-apt: skipping apt packages"; fi
  if [ "$CORAL" -eq 1 ]; then install_coral_runtime; fi
  if [ "$IMX500" -eq 1 ]; then install_imx500_packages; fi
  create_venv
  enable_linger
  say "done: deploy with \`edgepipe deploy BUNDLE ${USER}@$(hostname)\` (it uses ${PREFIX}/venv/bin/python)"
}

main "$@"
