#include "CFloatEnv.h"
#if defined(__x86_64__)
#include <xmmintrin.h>
uint32_t forge_get_mxcsr(void) { return _mm_getcsr(); }
uint32_t forge_enable_ftz_daz(void) {
    uint32_t old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u);
    return old;
}
#else
uint32_t forge_get_mxcsr(void) { return 0; }
uint32_t forge_enable_ftz_daz(void) { return 0; }
#endif
