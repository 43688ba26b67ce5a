#!/bin/bash
# The INIT of a throwaway systemd for the integration tests (tests/integration/systemd.rs).
#
# Run as:  unshare --pid --fork --kill-child --mount --mount-proc --uts --ipc --net -- \
#              bash systemd_boot.sh STATE
# STATE is the test's own temporary directory. Files under STATE/root/usr and STATE/root/etc are
# copied into the booted system's /usr and /etc (the "installed as shipped" files).
#
# Without the steps below, systemd booting in a namespace that shares the host's file systems
# empties the host's /tmp (systemd-tmpfiles-setup), changes host-wide sysctls, and more. So
# before exec'ing systemd this script:
#   - makes every mount private, so nothing mounted here propagates to the host;
#   - puts overlays on /usr, /etc and /var with upper and work dirs inside STATE: what the
#     test installs, and what logrotate or systemd writes under /var/lib, stays in STATE;
#   - mounts fresh tmpfs on /run, /tmp, /var/tmp and /var/log;
#   - gives the namespace its own minimal /dev: the host's /dev is one devtmpfs shared by all
#     mount namespaces, and journald would create a /dev/log symlink in it (the host has none);
#   - makes /proc/sys read-only, as systemd-nspawn does: PID 1 raises fs.file-max and
#     fs.nr_open at boot, and those are host-wide;
#   - moves itself into a cgroup of its own: systemd treats the cgroup it starts in as its
#     root and migrates every process found there into init.scope, which in the host's root
#     cgroup would be every process on the machine;
#   - masks the units that touch host-wide state or are not wanted (listed below): tmpfiles,
#     sysctl, binfmt, module loading, remounts, timesyncd (the clock), modprobe@ (kernel
#     modules), udev (device events), journald's audit socket (kernel auditing), every timer
#     and getty;
#   - the caller adds --uts (systemd sets the hostname) and --net (a private loopback: the
#     shipped units listen on the fixed port 5140 without colliding with anything on the host).
set -euo pipefail

state=$1
# The cgroup directory name; the test removes it (in every hierarchy) after the boot ends.
cgroup_name=$(basename "$state")

mount --make-rprivate /

for dir in usr etc var; do
    mkdir -p "$state/overlay/$dir/upper" "$state/overlay/$dir/work"
    mount -t overlay "overlay-$dir" \
        -o "lowerdir=/$dir,upperdir=$state/overlay/$dir/upper,workdir=$state/overlay/$dir/work" "/$dir"
done
for dir in usr etc; do
    if [ -d "$state/root/$dir" ]; then
        cp -a "$state/root/$dir/." "/$dir/"
    fi
done

mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /var/log

# A minimal /dev in the manner of systemd-nspawn: the harmless device nodes bind-mounted from
# the host, a private devpts, shm and the usual symlinks.
newdev=/run/.newdev
mkdir "$newdev"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$newdev"
for node in null zero full random urandom tty; do
    touch "$newdev/$node"
    mount --bind "/dev/$node" "$newdev/$node"
done
mkdir "$newdev/pts" "$newdev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$newdev/pts"
ln -s pts/ptmx "$newdev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$newdev/shm"
ln -s /proc/self/fd "$newdev/fd"
ln -s /proc/self/fd/0 "$newdev/stdin"
ln -s /proc/self/fd/1 "$newdev/stdout"
ln -s /proc/self/fd/2 "$newdev/stderr"
mount --move "$newdev" /dev
rmdir "$newdev"

mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys

if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
    hierarchies=/sys/fs/cgroup                                # cgroup v2 only
else
    hierarchies="/sys/fs/cgroup/systemd /sys/fs/cgroup/unified" # hybrid: systemd's two trees
fi
for hierarchy in $hierarchies; do
    [ -d "$hierarchy" ] || continue
    mkdir -p "$hierarchy/$cgroup_name"
    echo $$ > "$hierarchy/$cgroup_name/cgroup.procs"
done

mkdir -p /run/systemd/system
for unit in \
    systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service \
    systemd-tmpfiles-clean.timer systemd-sysctl.service systemd-binfmt.service \
    systemd-modules-load.service systemd-remount-fs.service systemd-update-utmp.service \
    systemd-journal-flush.service systemd-sysusers.service systemd-random-seed.service \
    systemd-hwdb-update.service ldconfig.service systemd-firstboot.service \
    systemd-machine-id-commit.service systemd-pstore.service systemd-timesyncd.service \
    getty.target console-getty.service serial-getty@.service getty@.service \
    modprobe@.service kmod-static-nodes.service systemd-journald-audit.socket \
    systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
    systemd-udevd-control.socket systemd-udevd-kernel.socket proc-sys-fs-binfmt_misc.automount \
    $(cd /lib/systemd/system && ls -- *.timer 2>/dev/null); do
    ln -sf /dev/null "/run/systemd/system/$unit"
done

ip link set lo up

exec env -i container=other PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit=basic.target
