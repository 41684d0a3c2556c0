// Floating-point environment of the calling thread (x86-64 MXCSR), and a vector square root:
// two things Swift cannot express. Swift cannot touch MXCSR,
// so these two lines live in C. Other architectures get no-ops that report 0.
#pragma once
#include <stdint.h>

/// The calling thread's MXCSR (0 where there is none).
uint32_t forge_get_mxcsr(void);
/// Sets flush-to-zero (0x8000) and denormals-are-zero (0x0040) on the calling thread only;
/// returns the previous MXCSR. Threads created afterwards inherit it; running ones do not.
uint32_t forge_enable_ftz_daz(void);

/// Eight floats, imported into Swift as SIMD8<Float>.
typedef float forge_float8 __attribute__((ext_vector_type(8)));

/// Lane-wise square root as one vector instruction. Swift's `squareRoot()` on Linux goes
/// through libm's errno-setting sqrtf one lane at a time, which costs Adam 4× here.
static inline forge_float8 forge_sqrt8(forge_float8 x) { return __builtin_elementwise_sqrt(x); }
