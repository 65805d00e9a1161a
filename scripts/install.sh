#!/usr/bin/env bash
# Install corral into ./.venv (Python >= 3.11). With --test, also what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

pick_python() {
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$py"; return 0
    fi
  done
  return 1
}

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "corral install: missing $*: install them (apt-get install $*) and run again" >&2
    exit 1
  fi
}

# Podman on hosts like CI's (hybrid cgroups, a hard nofile limit processes cannot raise, no
# systemd as PID 1) fails without these; `corral doctor` explains each. An existing file is
# never rewritten: doctor prints what it misses.
containers_conf() {
  local conf=/etc/containers/containers.conf nofile
  [ "$(id -u)" = 0 ] || return 0
  [ -e "$conf" ] && return 0
  nofile=$(ulimit -Hn)
  mkdir -p /etc/containers
  cat >"$conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
EOF
}

PY=$(pick_python) || { apt_install python3 python3-venv; PY=$(pick_python); }
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  apt_install python3-venv
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  .venv/bin/python -m ensurepip --upgrade >/dev/null
fi
# agents with user:, and sandboxes run by root, switch identity through setpriv
command -v setpriv >/dev/null 2>&1 || apt_install util-linux
if [ "$want_test" = 1 ]; then
  # the identity tests make unprivileged users for agents' user:
  command -v useradd >/dev/null 2>&1 || apt_install passwd
  # the sandbox tests drive real bubblewrap; Node agents' tests run npm ci
  command -v bwrap >/dev/null 2>&1 || apt_install bubblewrap
  command -v npm >/dev/null 2>&1 || apt_install npm
  # the logs tests run a real JVM (a single-file source program) to print its stack
  command -v javac >/dev/null 2>&1 || apt_install default-jdk-headless
  # the vm tests boot real QEMU guests (their kernel and busybox come from apt at test time)
  command -v qemu-system-x86_64 >/dev/null 2>&1 || apt_install qemu-system-x86
  # the initramfs test lists the archive corral packs with busybox's own cpio
  command -v busybox >/dev/null 2>&1 || apt_install busybox
  # corral boot falls back to an @reboot crontab entry where systemd is not PID 1; its test
  # writes one for real
  command -v crontab >/dev/null 2>&1 || apt_install cron
  # the daemon's TLS test makes its certificate with openssl
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  # the container level's tests drive real Podman and Docker on a debootstrapped base image
  # (vm.python guests use a debootstrapped root too)
  for tool in podman runc dockerd debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || { apt_install podman runc docker.io debootstrap; break; }
  done
  # the rootless tests run corral as a non-root user on rootless Podman: its user namespace
  # needs newuidmap/newgidmap
  command -v newuidmap >/dev/null 2>&1 || apt_install uidmap
  # the pull tests run a real registry on 127.0.0.1 (Debian's docker-registry), with an
  # htpasswd (bcrypt) file for the credentials test
  command -v docker-registry >/dev/null 2>&1 || apt_install docker-registry
  command -v htpasswd >/dev/null 2>&1 || apt_install apache2-utils
  # the exporters' outputs are checked by the tools that read them: docker-compose config,
  # systemd-analyze verify, make -n (kubernetes-validate comes from PyPI with the test extra)
  command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
  command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
  command -v make >/dev/null 2>&1 || apt_install make
  # corral top is tested once as a user runs it, in a terminal that tmux drives
  command -v tmux >/dev/null 2>&1 || apt_install tmux
  # the observability tests scrape corral with a real Prometheus and check the alert rules
  # with its promtool
  command -v promtool >/dev/null 2>&1 || apt_install prometheus
  # the ray placement's mixed fleet keeps its state in a real Redis on this host
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  # the dashboard's tests drive Debian's Chromium headless through Playwright (from PyPI, the
  # test extra; it never downloads a browser of its own)
  command -v chromium >/dev/null 2>&1 || apt_install chromium
  # the log forwarding tests send syslog to a real rsyslog (Debian's), started by a fixture
  command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || apt_install rsyslog
  containers_conf
  # the tui, ray, forward and aws extras too: corral top's, the ray placement's, the Fluent
  # sink's and the agents' AWS identities' tests drive them, and mypy checks them
  .venv/bin/python -m pip install -q -e '.[test,tui,ray,forward,aws]'
else
  .venv/bin/python -m pip install -q -e .
fi
echo "corral installed: $(.venv/bin/corral --version) in $(pwd)/.venv"
