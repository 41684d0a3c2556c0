// Floating-point environment of the calling thread (x86-64 MXCSR). Swift cannot touch MXCSR,
// so these two lines live in C. Other architectures get no-ops that report 0.
#pragma once
#include <stdint.h>

/// The calling thread's MXCSR (0 where there is none).
uint32_t forge_get_mxcsr(void);
/// Sets flush-to-zero (0x8000) and denormals-are-zero (0x0040) on the calling thread only;
/// returns the previous MXCSR. Threads created afterwards inherit it; running ones do not.
uint32_t forge_enable_ftz_daz(void);
