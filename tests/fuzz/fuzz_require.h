/* require(): the fuzz targets' invariant check. It aborts, so libFuzzer and
 * the replay driver both report a broken invariant as a crash. */
#ifndef FUZZ_REQUIRE_H
#define FUZZ_REQUIRE_H

#include <stdio.h>
#include <stdlib.h>

#define require(cond) do {                                                     \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FUZZ INVARIANT %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                           \
        }                                                                      \
    } while (0)

#endif
