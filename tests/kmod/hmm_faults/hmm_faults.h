/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ioctls of /dev/hmm_faults. They carry no structure (_IO: no direction, no size), so the
 * guest suite computes their numbers from this header alone.
 */
#ifndef HMM_FAULTS_H
#define HMM_FAULTS_H

#include <linux/ioctl.h>

/* A NULL pointer dereference in the module: an Oops whose RIP is a module frame. */
#define HMM_FAULTS_OOPS		_IO('f', 0x01)
/* WARN() with the message "hmm_faults: deliberate warning"; the ioctl then returns 0. */
#define HMM_FAULTS_WARN		_IO('f', 0x02)
/* Sleep in TASK_UNINTERRUPTIBLE until HMM_FAULTS_WAKE: no signal ends it. */
#define HMM_FAULTS_SLEEP	_IO('f', 0x03)
/* Wake every task in HMM_FAULTS_SLEEP. */
#define HMM_FAULTS_WAKE		_IO('f', 0x04)
/* Spin with preemption disabled for `arg` seconds (at most 60): a soft lockup. */
#define HMM_FAULTS_SPIN		_IO('f', 0x05)

#endif /* HMM_FAULTS_H */
