// OpenBLAS own cblas.h (found through pkg-config openblas), which also declares
// openblas_get_corename and openblas_set_num_threads.
#include <cblas.h>
