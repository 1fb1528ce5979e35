"""Decides what a stateful sequence that crashed or hung the guest was, how to shrink it, and
how to write it down: as a pytest case, and as a C program that needs only libc and
/dev/hmm_dmirror* (what a kernel developer attaches to a bug report).

Hypothesis cannot shrink across a guest that died, so the guest streams each step to the
host before it runs it (`stateful-step` events, after a `stateful-sequence` event that says
which buffers and devices the sequence has). The host's events file of the boot that died
then ends with the sequence up to the step that killed it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Step = tuple[str, tuple[Any, ...]]

STEP_NAMES = frozenset({"cpu_read", "cpu_write", "device_read", "device_write",
                        "migrate_to_device", "migrate_to_system", "evict", "exclusive",
                        "fail_next_allocation", "reopen", "mprotect", "dontneed", "fork_child"})


@dataclass(frozen=True)
class RecordedSequence:
    variant: str
    devices: tuple[str, str]
    regions: tuple[tuple[str, str, int], ...]  # name, model.Kind name, pages
    steps: tuple[Step, ...]

    def with_steps(self, steps: Iterable[Step]) -> RecordedSequence:
        return RecordedSequence(self.variant, self.devices, self.regions, tuple(steps))

    def to_json(self) -> dict[str, Any]:
        return {"variant": self.variant, "devices": list(self.devices),
                "regions": [list(r) for r in self.regions],
                "steps": [[step, list(args)] for step, args in self.steps]}


def last_sequence(events: Iterable[dict[str, Any]]) -> RecordedSequence | None:
    """The last stateful sequence in one boot's events, up to the last step streamed."""
    found: RecordedSequence | None = None
    steps: list[Step] = []
    for event in events:
        kind = event.get("event")
        if kind == "stateful-sequence":
            if found is not None:
                found = found.with_steps(steps)
            found = RecordedSequence(
                variant=str(event["variant"]),
                devices=(str(event["devices"][0]), str(event["devices"][1])),
                regions=tuple((str(n), str(k), int(p)) for n, k, p in event["regions"]),
                steps=())
            steps = []
        elif kind == "stateful-step" and found is not None:
            steps.append((str(event["step"]), tuple(event["args"])))
    return None if found is None else found.with_steps(steps)


def read_events(text: str) -> list[dict[str, Any]]:
    """JSON lines; a last line cut short by the guest's death is dropped."""
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def minimise(steps: Sequence[Step], reproduces: Callable[[Sequence[Step]], bool],
             budget: int) -> tuple[list[Step], int]:
    """Delta debugging (ddmin): a smallest subsequence that still reproduces, trying at most
    `budget` candidates. The last step (the one the guest died in) is always kept. Returns
    the sequence and the number of candidates tried."""
    *body, last = list(steps)
    tries = 0
    chunks = 2
    while body and tries < budget:
        size = -(-len(body) // chunks)
        reduced = False
        for start in range(0, len(body), size):
            if tries >= budget:
                break
            candidate = body[:start] + body[start + size:]
            tries += 1
            if reproduces([*candidate, last]):
                body, chunks, reduced = candidate, max(chunks - 1, 2), True
                break
        if not reduced:
            if size == 1:
                break
            chunks = min(len(body), chunks * 2)
    return [*body, last], tries


def pytest_case(sequence: RecordedSequence, name: str, why: str) -> str:
    lines = [f'"""{why}', "", "Replays through the stateful suite\'s checks; written by "
             "`python -m harness reproduce`.", '"""', "",
             "from harness.guest import model as m",
             "from tests.guest.test_stateful import fault_around_off, replay", "",
             '__all__ = ["fault_around_off"]', "",
             "REGIONS = [" + ", ".join(f"({n!r}, m.Kind.{k}, {p})"
                                       for n, k, p in sequence.regions) + "]",
             "STEPS = ["]
    lines += [f"    ({step!r}, {tuple(args)!r})," for step, args in sequence.steps]
    lines += ["]", "", "", f"def test_{name}(variant, fault_around_off):",
              f"    assert variant.name == {sequence.variant!r}, "
              f"'recorded on the {sequence.variant} devices'",
              "    replay(variant, STEPS, fault_around_off, REGIONS)", ""]
    return "\n".join(lines)


_PROTS = {"none": "PROT_NONE", "read": "PROT_READ", "read-write": "PROT_READ | PROT_WRITE"}
_MMAP_FLAGS = {"PRIVATE": "MAP_PRIVATE | MAP_ANONYMOUS", "SHARED": "MAP_SHARED | MAP_ANONYMOUS",
               "FILE": "MAP_SHARED"}


def c_program(sequence: RecordedSequence, why: str) -> str:
    """A standalone C reproducer: the same buffers, the same calls in the same order, and
    after each step the snapshots and check-exclusive the suite takes."""
    numbers = [int(path.removeprefix("/dev/hmm_dmirror")) for path in sequence.devices]
    regions = "\n".join(f'    {{ "{name}", "{kind}", {npages}, NULL }},'
                        for name, kind, npages in sequence.regions)
    index = {name: i for i, (name, _, _) in enumerate(sequence.regions)}
    body = []
    for number, (step, args) in enumerate(sequence.steps, 1):
        body.append(f'    step({number}, "{step}{list(args)}");')
        body += [f"    {line}" for line in _c_step(step, args, index)]
        body.append("    observe();")
    largest = max(npages for _, _, npages in sequence.regions)
    return _C_TEMPLATE.format(
        why=why.replace("*/", "* /"), regions=regions, nregions=len(sequence.regions),
        dev_a=numbers[0], dev_b=numbers[1], largest=largest, body="\n".join(body),
        shared=int(any(kind != "PRIVATE" for _, kind, _ in sequence.regions)),
        mmap_flags="\n        ".join(f'if (!strcmp(r->kind, "{k}"))\n            flags = {v};'
                                      for k, v in _MMAP_FLAGS.items()))


def _c_step(step: str, args: tuple[Any, ...], index: dict[str, int]) -> list[str]:
    def at(name: str, first: int) -> str:
        return f"R({index[name]}) + {first} * page"

    if step in ("cpu_read", "cpu_write", "dontneed"):
        name, first, count = args
        call = {"cpu_read": "cpu_read", "cpu_write": "stamp", "dontneed": "dontneed"}[step]
        return [f"{call}({at(name, first)}, {count});"]
    if step in ("device_read", "device_write", "migrate_to_device", "migrate_to_system",
                "evict", "exclusive"):
        device, name, first, count = args
        request = {"device_read": "HMM_DMIRROR_READ", "device_write": "HMM_DMIRROR_WRITE",
                   "migrate_to_device": "HMM_DMIRROR_MIGRATE_TO_DEV",
                   "migrate_to_system": "HMM_DMIRROR_MIGRATE_TO_SYS",
                   "evict": "HMM_DMIRROR_EVICT_PFNS", "exclusive": "HMM_DMIRROR_EXCLUSIVE"}[step]
        ptr = "0" if step in ("migrate_to_system", "evict") else "scratch"
        lines = [f"stamp(scratch, {count});"] if step == "device_write" else []
        call = f"dmirror({device}, {request}, {at(name, first)}, {count}, {ptr});"
        if step == "evict":
            return ["#ifdef HMM_DMIRROR_EVICT_PFNS", call, "#else",
                    'puts("  (HMM_DMIRROR_EVICT_PFNS is the hmm-harness extension: skipped)");',
                    "#endif"]
        return [*lines, call]
    if step == "fail_next_allocation":
        (device,) = args
        return [f"dmirror({device}, HMM_DMIRROR_FLAGS, NULL, HMM_DMIRROR_FLAG_FAIL_ALLOC, 0);"]
    if step == "reopen":
        (device,) = args
        return [f"reopen({device});"]
    if step == "mprotect":
        name, prot = args
        return [f"check(mprotect(R({index[name]}), regions[{index[name]}].npages * page, "
                f"{_PROTS[prot]}), \"mprotect\");"]
    if step == "fork_child":
        name, write = args
        return [f"fork_child({index[name]}, {int(bool(write))});"]
    raise ValueError(f"unknown step {step!r}")


_C_TEMPLATE = """\
/*
 * {why}
 *
 * Written by hmm-harness (`python -m harness reproduce`). Needs libc, test_hmm loaded, and
 * lib/test_hmm_uapi.h from the kernel tree:
 *     gcc -O1 -I<kernel>/lib -o repro repro.c && sudo ./repro
 * Each step prints before it runs (unbuffered), so the last line shows where it died.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_hmm_uapi.h"

/* A shrunk sequence needs only some of these. */
#define HELPER static __attribute__((unused))

struct region {{
    const char *name;
    const char *kind;
    unsigned long npages;
    char *addr;
}};

static struct region regions[] = {{
{regions}
}};
#define NREGIONS {nregions}
#define R(i) (regions[i].addr)

static const int devices[2] = {{ {dev_a}, {dev_b} }};
static int fds[4] = {{ -1, -1, -1, -1 }};
static unsigned long page;
static char *scratch;
static unsigned char *snap;
static int next_stamp = 1;

HELPER void check(int ret, const char *what)
{{
    if (ret) {{
        perror(what);
        exit(1);
    }}
}}

HELPER void step(int number, const char *what)
{{
    printf("step %d: %s\\n", number, what);
}}

HELPER void dmirror(int device, unsigned long request, void *addr, unsigned long npages,
            void *ptr)
{{
    struct hmm_dmirror_cmd cmd = {{
        .addr = (uintptr_t)addr, .ptr = (uintptr_t)ptr, .npages = npages,
    }};
    int ret = ioctl(fds[device], request, &cmd);

    printf("  ioctl on /dev/hmm_dmirror%d: %s, cpages %llu, faults %llu\\n", device,
           ret ? strerror(errno) : "ok", (unsigned long long)cmd.cpages,
           (unsigned long long)cmd.faults);
}}

HELPER void stamp(char *addr, unsigned long npages)
{{
    for (unsigned long p = 0; p < npages; p++, next_stamp++)
        for (unsigned long i = 0; i < page / sizeof(int); i++)
            ((int *)(addr + p * page))[i] = next_stamp;
}}

HELPER void cpu_read(char *addr, unsigned long npages)
{{
    memcpy(scratch, addr, npages * page);
}}

HELPER void dontneed(char *addr, unsigned long npages)
{{
    check(madvise(addr, npages * page, MADV_DONTNEED), "madvise(MADV_DONTNEED)");
}}

HELPER void reopen(int device)
{{
    char path[32];

    if (fds[device] >= 0)
        close(fds[device]);
    snprintf(path, sizeof(path), "/dev/hmm_dmirror%d", device);
    fds[device] = open(path, O_RDWR);
    check(fds[device] < 0, path);
}}

HELPER void fork_child(int region, int write)
{{
    pid_t pid = fork();

    check(pid < 0, "fork");
    if (pid == 0) {{
        cpu_read(R(region), regions[region].npages);
        if (write)
            stamp(R(region), regions[region].npages);
        _exit(0);
    }}
    waitpid(pid, NULL, 0);
}}

/* What the suite checks after every step: snapshots, then check-exclusive. */
static void observe(void)
{{
    for (int r = 0; r < NREGIONS; r++)
        for (int d = 0; d < 2; d++) {{
            struct hmm_dmirror_cmd cmd = {{
                .addr = (uintptr_t)R(r), .ptr = (uintptr_t)snap,
                .npages = regions[r].npages,
            }};

            ioctl(fds[devices[d]], HMM_DMIRROR_SNAPSHOT, &cmd);
            cmd.ptr = 0;
            ioctl(fds[devices[d]], HMM_DMIRROR_CHECK_EXCLUSIVE, &cmd);
        }}
}}

int main(void)
{{
    setvbuf(stdout, NULL, _IONBF, 0);
    page = sysconf(_SC_PAGESIZE);
    scratch = malloc({largest} * page);
    snap = malloc({largest});
    check(!scratch || !snap, "malloc");
    if ({shared}) {{
        /* Fault-around would map neighbours of a faulted shared page. */
        int fd = open("/sys/kernel/debug/fault_around_bytes", O_WRONLY);

        if (fd >= 0) {{
            dprintf(fd, "%lu", page);
            close(fd);
        }}
    }}
    for (int d = 0; d < 2; d++)
        reopen(devices[d]);
    for (int i = 0; i < NREGIONS; i++) {{
        struct region *r = &regions[i];
        int flags = 0, fd = -1;

        {mmap_flags}
        if (!strcmp(r->kind, "FILE")) {{
            fd = open("/tmp", O_TMPFILE | O_RDWR, 0600);
            check(fd < 0 || ftruncate(fd, r->npages * page), "tmpfile");
        }}
        r->addr = mmap(NULL, r->npages * page, PROT_READ | PROT_WRITE, flags, fd, 0);
        check(r->addr == MAP_FAILED, "mmap");
        /* 4 KiB pages, none of them populated yet. */
        check(madvise(r->addr, r->npages * page, MADV_NOHUGEPAGE), "madvise(MADV_NOHUGEPAGE)");
        dontneed(r->addr, r->npages);
    }}
    observe();

{body}

    puts("done: the sequence ran to its end");
    return 0;
}}
"""
