"""The guest's ``/init``: load modules, mount the shares, run the job, report, power off.

The contract with the host (``corral.drivers.vm.job`` writes the host side):

- the kernel command line carries ``corral.token=T``, a per-start random token; the guest
  prints ``corral-booted T`` once it can run the job and ``corral-exit T CODE`` after it, both
  on the console (``ttyS0``), where the driver takes them out of the agent's output. The token
  keeps an agent's own output from being read as a marker by accident (an agent inside the guest
  can read it, so it is no security boundary: the exit code of an untrusted agent is its word);
- the run share (9p tag ``corral``) holds ``job.sh`` (``cd``, ``export``, ``exec``: quoted by
  the host, so no size or quoting limit of the kernel command line applies), ``workdir`` (the
  path to mount the ``corral-work`` share at, the same as on the host), ``net`` when user-mode
  networking is wanted, ``root`` when the job runs in the Debian tree shared as ``corral-root``
  (read-only, with a tmpfs overlay, so many VMs share one tree), and ``stop-signal``, written
  by the host just before an ACPI power-down;
- the job's stdout goes to ``ttyS0`` and its stderr to ``ttyS1`` with output post-processing
  off (no ``\\r`` added), the host reads them as two streams;
- the ACPI power button (QMP ``system_powerdown``) sends the job's process group the signal
  named in ``stop-signal`` (default TERM); the guest powers off when the job has ended, so the
  job's exit code is still reported. A job that ignores it is ended by the host's SIGKILL of
  QEMU after the grace period.
- a job's code is what ``sh``'s ``wait`` gives: 128+N for a job killed by signal N.
"""

from __future__ import annotations

SCRIPT = r"""#!/bin/sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
token=
for arg in $(cat /proc/cmdline); do
  case "$arg" in corral.token=*) token=${arg#corral.token=} ;; esac
done
finish() {
  echo "corral-exit $token $1" >/dev/ttyS0
  sync
  poweroff -f
}
say() { echo "corral-guest: $*" >/dev/ttyS0; }
while read -r m; do insmod "/lib/modules/$m.ko" 2>/dev/null || say "cannot load module $m"; done \
  </lib/modules/load
stty -F /dev/ttyS0 -opost 2>/dev/null
stty -F /dev/ttyS1 -opost 2>/dev/null
opts=trans=virtio,version=9p2000.L,msize=262144
mkdir -p /run/corral
mount -t 9p -o "$opts" corral /run/corral || { say "cannot mount the run share"; finish 125; }
root=
if [ -e /run/corral/root ]; then
  # a Debian tree shared read-only by every VM; writes land in a tmpfs overlay of this one
  mkdir -p /lower /rw /sysroot
  mount -t 9p -o "$opts,ro,cache=loose" corral-root /lower \
    || { say "cannot mount the root"; finish 125; }
  mount -t tmpfs tmpfs /rw && mkdir -p /rw/upper /rw/work
  mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /sysroot \
    || { say "cannot overlay the root"; finish 125; }
  for d in proc sys dev run; do mkdir -p "/sysroot/$d"; mount -o rbind "/$d" "/sysroot/$d"; done
  mount -t tmpfs tmpfs /sysroot/tmp
  root=/sysroot
fi
wd=$(cat /run/corral/workdir)
mkdir -p "$root$wd"
mount -t 9p -o "$opts" corral-work "$root$wd" || { say "cannot mount the workdir $wd"; finish 125; }
ip link set lo up 2>/dev/null
if [ -e /run/corral/net ]; then
  ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
  echo "nameserver 10.0.2.3" >"$root/etc/resolv.conf"
fi
button=
for d in /sys/class/input/event*; do
  case "$(cat "$d/device/name" 2>/dev/null)" in "Power Button") button=/dev/input/${d##*/} ;; esac
done
# The button is opened before the booted marker: evdev queues events only for open files, so
# a power-down the host sends right after the marker is not lost.
if [ -n "$button" ]; then
  exec 3<"$button"
  (
    dd of=/dev/null bs=24 count=1 <&3 2>/dev/null
    sig=$(cat /run/corral/stop-signal 2>/dev/null)
    while [ ! -s /tmp/job.pid ]; do sleep 0.05; done
    job=$(cat /tmp/job.pid)
    kill -"${sig:-TERM}" -"$job" 2>/dev/null || kill -"${sig:-TERM}" "$job"
  ) &
  watcher=$!
fi
# from here the console is the job's: the init's own job-status chatter stays out of it
exec </dev/null >/dev/null 2>&1
echo "corral-booted $token" >/dev/ttyS0
if [ -n "$root" ]; then
  setsid chroot "$root" /bin/sh /run/corral/job.sh </dev/null >/dev/ttyS0 2>/dev/ttyS1 3<&- &
else
  setsid sh /run/corral/job.sh </dev/null >/dev/ttyS0 2>/dev/ttyS1 3<&- &
fi
job=$!
echo "$job" >/tmp/job.pid
wait "$job"
code=$?
kill -KILL -"$job" 2>/dev/null
[ -n "$button" ] && kill -KILL "$watcher" 2>/dev/null
finish "$code"
"""
