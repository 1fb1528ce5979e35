"""Host side of the HMM test harness: kernel, module, guest root, QEMU, results."""
