/*
 * The C side of the per-call overhead benchmark: time N one-page HMM_DMIRROR_READ ioctls
 * on a device, the same calls the Python wrapper makes, and print the total as JSON.
 * Usage: read-latency DEVICE CALLS
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "test_hmm_uapi.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long page = sysconf(_SC_PAGESIZE);
	struct hmm_dmirror_cmd cmd;
	unsigned long calls, i;
	double start, seconds;
	char *memory, *mirror;
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: %s DEVICE CALLS\n", argv[0]);
		return 2;
	}
	calls = strtoul(argv[2], NULL, 10);
	fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	memory = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mirror = malloc(page);
	if (memory == MAP_FAILED || !mirror)
		return 1;
	memset(memory, 0x5a, page);

	start = now();
	for (i = 0; i < calls; i++) {
		memset(&cmd, 0, sizeof(cmd));
		cmd.addr = (uintptr_t)memory;
		cmd.ptr = (uintptr_t)mirror;
		cmd.npages = 1;
		if (ioctl(fd, HMM_DMIRROR_READ, &cmd)) {
			fprintf(stderr, "HMM_DMIRROR_READ: %s\n", strerror(errno));
			return 1;
		}
	}
	seconds = now() - start;
	printf("{\"calls\": %lu, \"seconds\": %.9f}\n", calls, seconds);
	return 0;
}
