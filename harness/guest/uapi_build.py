"""Build-time only: compile the cffi module `_hmm_uapi` against a kernel's lib/test_hmm_uapi.h.

    python3 -m harness.guest.uapi_build --header LINUX/lib/test_hmm_uapi.h --outdir DIR

Every ioctl number, enum value and struct layout comes from the C compiler reading the
kernel's own header, never from this file. Ioctls that only some kernels define become
`HAS_<NAME>` flags (0 or 1); when the header lacks one, `<NAME>` is a dummy 0 that
harness.guest.hmm never sends.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cffi

MODULE_NAME = "_hmm_uapi"
HEADER_NAME = "test_hmm_uapi.h"

# In every header from 6.1 (when the coherent device type renumbered them) to 7.2.
IOCTLS = (
    "HMM_DMIRROR_READ",
    "HMM_DMIRROR_WRITE",
    "HMM_DMIRROR_MIGRATE_TO_DEV",
    "HMM_DMIRROR_MIGRATE_TO_SYS",
    "HMM_DMIRROR_SNAPSHOT",
    "HMM_DMIRROR_EXCLUSIVE",
    "HMM_DMIRROR_CHECK_EXCLUSIVE",
    "HMM_DMIRROR_RELEASE",
    "HMM_DMIRROR_FLAGS",
)

# Newer than 7.2: READ_UNLOCKED is in 7.3-rc; EVICT_PFNS is this project's own extension.
OPTIONAL_IOCTLS = (
    "HMM_DMIRROR_READ_UNLOCKED",
    "HMM_DMIRROR_EVICT_PFNS",
)

SNAPSHOT_PROTECTIONS = (
    "HMM_DMIRROR_PROT_ERROR",
    "HMM_DMIRROR_PROT_NONE",
    "HMM_DMIRROR_PROT_READ",
    "HMM_DMIRROR_PROT_WRITE",
    "HMM_DMIRROR_PROT_PMD",
    "HMM_DMIRROR_PROT_PUD",
    "HMM_DMIRROR_PROT_ZERO",
    "HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL",
    "HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE",
    "HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL",
    "HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE",
)

MEMORY_TYPES = (
    "HMM_DMIRROR_MEMORY_DEVICE_PRIVATE",
    "HMM_DMIRROR_MEMORY_DEVICE_COHERENT",
)

LIBC_CONSTANTS = (
    "PROT_NONE", "PROT_READ", "PROT_WRITE",
    "MAP_PRIVATE", "MAP_SHARED", "MAP_ANONYMOUS", "MAP_FIXED", "MAP_NORESERVE", "MAP_HUGETLB",
    "MADV_NORMAL", "MADV_DONTNEED", "MADV_FREE", "MADV_HUGEPAGE", "MADV_NOHUGEPAGE",
    "MADV_DONTFORK",
    "MREMAP_MAYMOVE", "MREMAP_FIXED",
)

# Younger than some C libraries the guest root may carry.
OPTIONAL_LIBC_CONSTANTS = (
    "MADV_COLLAPSE",
    "MREMAP_DONTUNMAP",
)

INCLUDES = f"""
#include <errno.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include "{HEADER_NAME}"
"""

TYPES = (
    """
typedef int... __u64;
typedef int... off_t;

struct hmm_dmirror_cmd {
    __u64 addr;
    __u64 ptr;
    __u64 npages;
    __u64 cpages;
    __u64 faults;
    ...;
};

static const unsigned long long HMM_DMIRROR_FLAG_FAIL_ALLOC;
static void *const MAP_FAILED;
"""
    + "".join(f"static const unsigned long {name};\n" for name in IOCTLS + OPTIONAL_IOCTLS)
    + "".join(f"static const int HAS_{name};\n" for name in OPTIONAL_IOCTLS)
    + "".join(f"static const int {name};\n" for name in SNAPSHOT_PROTECTIONS + MEMORY_TYPES)
    + "".join(f"static const int {name};\n" for name in LIBC_CONSTANTS + OPTIONAL_LIBC_CONSTANTS)
    + "".join(f"static const int HAS_{name};\n" for name in OPTIONAL_LIBC_CONSTANTS)
)

FUNCTIONS = """
int hmm_dmirror_ioctl(int fd, unsigned long request, struct hmm_dmirror_cmd *cmd);

void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
int munmap(void *addr, size_t length);
int mprotect(void *addr, size_t length, int prot);
int madvise(void *addr, size_t length, int advice);
void *mremap_fixed(void *old_address, size_t old_size, size_t new_size, int flags,
                   void *new_address);
void *mremap_into_hole(void *old_address, size_t size, int flags, void *new_address,
                       void *hole, size_t hole_size);
"""


def _optional(name: str) -> str:
    return f"""
#ifdef {name}
static const int HAS_{name} = 1;
#else
static const int HAS_{name} = 0;
#define {name} 0
#endif
"""


CUSTOMIZATIONS = (
    """
/* The libc prototypes are variadic; these pin the argument types cffi passes. */
static int hmm_dmirror_ioctl(int fd, unsigned long request, struct hmm_dmirror_cmd *cmd)
{
    return ioctl(fd, request, cmd);
}

static void *mremap_fixed(void *old_address, size_t old_size, size_t new_size, int flags,
                          void *new_address)
{
    return mremap(old_address, old_size, new_size, flags, new_address);
}

/* munmap() then mremap() with no Python in between: no allocation of the interpreter's
 * can take the hole before the move lands there. */
static void *mremap_into_hole(void *old_address, size_t size, int flags, void *new_address,
                              void *hole, size_t hole_size)
{
    if (munmap(hole, hole_size) != 0)
        return MAP_FAILED;
    return mremap(old_address, size, size, flags, new_address);
}
"""
    + "".join(_optional(name) for name in OPTIONAL_IOCTLS + OPTIONAL_LIBC_CONSTANTS)
)


def make_ffibuilder(header: Path) -> cffi.FFI:
    ffibuilder = cffi.FFI()
    ffibuilder.cdef(TYPES + FUNCTIONS)
    ffibuilder.set_source(MODULE_NAME, INCLUDES + CUSTOMIZATIONS,
                          include_dirs=[str(header.parent)])
    return ffibuilder


def find_compiler() -> str:
    """The C compiler setuptools will run: $CC, else the one Python was built with."""
    command = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    compiler = shlex.split(command)[0]
    if shutil.which(compiler) is None:
        raise FileNotFoundError(
            f"C compiler {compiler!r} not found; set CC to the one installed (e.g. CC=gcc-16)")
    return compiler


def build(header: Path, outdir: Path, verbose: bool = False) -> Path:
    """Compile the module against `header` and return the path of the .so in `outdir`."""
    if header.name != HEADER_NAME:
        raise ValueError(f"{header}: expected a file named {HEADER_NAME}")
    if not header.is_file():
        raise FileNotFoundError(f"{header}: no such header")
    find_compiler()
    outdir.mkdir(parents=True, exist_ok=True)
    ffibuilder = make_ffibuilder(header.resolve())
    with tempfile.TemporaryDirectory(prefix="hmm_uapi_build.") as workdir:
        built = Path(ffibuilder.compile(tmpdir=workdir, verbose=verbose))
        target = outdir / built.name
        shutil.copyfile(built, target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m harness.guest.uapi_build",
        description=f"Compile the cffi module {MODULE_NAME} against a kernel's {HEADER_NAME}.")
    parser.add_argument("--header", type=Path, required=True,
                        help=f"the kernel's lib/{HEADER_NAME}")
    parser.add_argument("--outdir", type=Path, required=True,
                        help=f"directory that receives {MODULE_NAME}.*.so")
    parser.add_argument("--verbose", action="store_true", help="show the compiler commands")
    args = parser.parse_args(argv)
    try:
        target = build(args.header, args.outdir, args.verbose)
    except (ValueError, OSError) as error:
        print(f"uapi_build: {error}", file=sys.stderr)
        return 2
    except cffi.VerificationError as error:
        print(f"uapi_build: compiling against {args.header} failed: {error}", file=sys.stderr)
        return 1
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
