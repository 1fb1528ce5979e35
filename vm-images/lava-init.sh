#!/bin/busybox sh
# PID 1 of the LAVA job's initramfs. The guest root is a read-only squashfs on the first
# virtio disk; a tmpfs overlay makes it writable. The project and the guest build (the cffi
# extension, hmm-tests) are in here under /hmm, and LAVA adds its test shell (/lava-JOB) and
# test_hmm.ko (/hmm/build/test_hmm.ko) to this archive before booting it. Everything is
# copied into the root, then a root shell waits on the console for LAVA's commands.
bb=/bin/busybox
fail() { $bb echo "hmm-harness: lava initramfs: $*"; exec $bb sh; }
$bb mount -t proc proc /proc
$bb mount -t sysfs sys /sys
$bb mount -t devtmpfs dev /dev
for m in $($bb cat /lib/modules/load-order); do
    $bb insmod /lib/modules/$m.ko || fail "insmod $m"
done
# The disk appears asynchronously once virtio_blk probes it.
for _ in $($bb seq 100); do [ -b /dev/vda ] && break; $bb usleep 100000; done
$bb mkdir -p /lower /rw /newroot
$bb mount -t squashfs -o ro /dev/vda /lower || fail "mount the guest root from /dev/vda"
$bb mount -t tmpfs -o mode=755 rw /rw
$bb mkdir -p /rw/upper /rw/work
$bb mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work root /newroot \
    || fail "mount the overlay root"
$bb mkdir -p /newroot/hmm
$bb cp -a /hmm/project /hmm/build /newroot/hmm/ || fail "copy /hmm into the root"
for d in /lava-*; do [ -d "$d" ] && $bb cp -a "$d" /newroot/; done
for d in tmp run var/tmp; do $bb mount -t tmpfs -o mode=1777 tmp /newroot/$d; done
$bb mount --move /sys /newroot/sys
$bb mount --move /proc /newroot/proc
$bb mount --move /dev /newroot/dev
export HOME=/root TERM=dumb PYTHON_COLORS=0 PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PS1='hmm-harness-lava# '
# PID 1 must not exit: the shell runs as its child on the console, with job control.
exec $bb switch_root /newroot /bin/busybox sh -c \
    '/bin/busybox setsid /bin/busybox cttyhack /bin/bash --norc --noprofile -i;
     /bin/busybox poweroff -f'
