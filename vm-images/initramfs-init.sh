#!/bin/busybox sh
# PID 1 of the initramfs: mount the read-only guest root (its erofs image on virtio-blk when the
# kernel command line says hmm_root=erofs, else over 9p) and the harness's shares over 9p, then
# hand over to the guest init in Python. Only busybox and a few modules are in here.
bb=/bin/busybox
fail() { $bb echo "hmm-harness: initramfs: $*"; $bb poweroff -f; }
$bb mount -t proc proc /proc
read up _ </proc/uptime; boot_times="initramfs=$up"
$bb mount -t devtmpfs dev /dev
# Modules the kernel has built in are not in the archive, so the list is read, not fixed.
for m in $($bb cat /lib/modules/load-order); do
    $bb insmod /lib/modules/$m.ko || fail "insmod $m"
done
opts=trans=virtio,version=9p2000.L,msize=512000
# The root and the build products do not change while the guest runs: cache them.
# The kernel hands command-line words it does not know to init as environment variables.
if [ "${hmm_root:-}" = erofs ]; then
    # Python's imports make thousands of small reads; from a block device they are local.
    $bb mount -t erofs -o ro /dev/vda /newroot || fail "mount the guest root from /dev/vda"
else
    $bb mount -t 9p -o $opts,ro,cache=loose sysroot /newroot || fail "mount the guest root"
fi
$bb mount -t 9p -o $opts,ro,cache=loose project /newroot/hmm/project || fail "mount project"
$bb mount -t 9p -o $opts,ro,cache=loose build /newroot/hmm/build || fail "mount build"
$bb mount -t 9p -o $opts results /newroot/hmm/results || fail "mount results"
for d in tmp run var/tmp root; do $bb mount -t tmpfs -o mode=1777 tmp /newroot/$d; done
$bb mount -t sysfs sys /newroot/sys
$bb mount -t proc proc /newroot/proc
$bb mount --move /dev /newroot/dev
read up _ </proc/uptime; boot_times="$boot_times switch_root=$up"
$bb umount /proc
export PYTHON_COLORS=0 TERM=dumb HMM_HARNESS_BOOT_TIMES="$boot_times"
# bench --whole-suite boots the C selftest's guest with a shell script of the harness's as init.
if [ -n "${hmm_script:-}" ]; then
    exec $bb switch_root /newroot /bin/sh "/hmm/results/$hmm_script"
fi
exec $bb switch_root /newroot /usr/bin/python3 -u /hmm/project/harness/guest/init.py
