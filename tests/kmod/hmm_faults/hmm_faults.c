// SPDX-License-Identifier: GPL-2.0
/*
 * hmm_faults: makes the kernel fail on purpose, for the hmm-harness's own tests.
 *
 * /dev/hmm_faults answers the ioctls of hmm_faults.h: an Oops, a WARN, an uninterruptible
 * sleep and a soft lockup, each in a function of its own so that the splat names a frame of
 * this module. The harness must report each as the kernel error it is and go on with the
 * next test. Never load this module anywhere but a throwaway guest.
 */

#include <linux/atomic.h>
#include <linux/bug.h>
#include <linux/fs.h>
#include <linux/jiffies.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/preempt.h>
#include <linux/wait.h>

#include "hmm_faults.h"

#define SPIN_MAX_SECONDS 60

static DECLARE_WAIT_QUEUE_HEAD(sleepers);
static atomic_t wakeups = ATOMIC_INIT(0);

static noinline int hmm_faults_oops(void)
{
	/* volatile: the compiler cannot prove the pointer NULL, so it emits the load. */
	int *volatile nowhere = NULL;

	return *nowhere;
}

static noinline void hmm_faults_warn(void)
{
	WARN(1, "hmm_faults: deliberate warning\n");
}

static noinline void hmm_faults_sleep(void)
{
	int seen = atomic_read(&wakeups);

	/* wait_event() sleeps in TASK_UNINTERRUPTIBLE: signals, SIGKILL included, wait. */
	wait_event(sleepers, atomic_read(&wakeups) != seen);
}

static noinline void hmm_faults_spin(unsigned long seconds)
{
	unsigned long end = jiffies + min_t(unsigned long, seconds, SPIN_MAX_SECONDS) * HZ;

	preempt_disable();
	while (time_before(jiffies, end))
		cpu_relax();
	preempt_enable();
}

static long hmm_faults_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case HMM_FAULTS_OOPS:
		return hmm_faults_oops();
	case HMM_FAULTS_WARN:
		hmm_faults_warn();
		return 0;
	case HMM_FAULTS_SLEEP:
		hmm_faults_sleep();
		return 0;
	case HMM_FAULTS_WAKE:
		atomic_inc(&wakeups);
		wake_up_all(&sleepers);
		return 0;
	case HMM_FAULTS_SPIN:
		hmm_faults_spin(arg);
		return 0;
	}
	return -ENOTTY;
}

static const struct file_operations hmm_faults_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = hmm_faults_ioctl,
};

static struct miscdevice hmm_faults_device = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "hmm_faults",
	.fops = &hmm_faults_fops,
};

static int __init hmm_faults_init(void)
{
	return misc_register(&hmm_faults_device);
}

static void __exit hmm_faults_exit(void)
{
	misc_deregister(&hmm_faults_device);
}

module_init(hmm_faults_init);
module_exit(hmm_faults_exit);
MODULE_DESCRIPTION("Oops, WARN, hang and soft lockup on request, for the hmm-harness's tests");
MODULE_LICENSE("GPL");
