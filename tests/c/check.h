/* The C unit tests' one check macro: count, print a FAIL line (pytest fails
 * on any), and go on so one run reports every failing row. */
#ifndef TP_TEST_CHECK_H
#define TP_TEST_CHECK_H

#include <stdio.h>

static int checks, failures;

#define CHECK(cond, ...) do {                                              \
        checks++;                                                          \
        if (!(cond)) {                                                     \
            failures++;                                                    \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            printf(__VA_ARGS__);                                           \
            printf("\n");                                                  \
        }                                                                  \
    } while (0)

#endif
