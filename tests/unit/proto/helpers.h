/* Helpers shared by the proto test suites. */
#ifndef STARLING_TEST_PROTO_HELPERS_H
#define STARLING_TEST_PROTO_HELPERS_H

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

/* Criterion runs each case in a fresh process where pointers inside a copied
 * parameter may not be valid (ASLR), so tables are passed by index: the case
 * reads table[*i] from its own copy of the static table. */
#define TABLE_PARAMS(suite, name, table)                                                           \
    ParameterizedTestParameters(suite, name)                                                       \
    {                                                                                              \
        static size_t idx_[sizeof table / sizeof table[0]];                                        \
        for (size_t i_ = 0; i_ < sizeof idx_ / sizeof idx_[0]; i_++)                               \
            idx_[i_] = i_;                                                                         \
        return cr_make_param_array(size_t, idx_, sizeof idx_ / sizeof idx_[0]);                    \
    }

/* A byte array literal and its size, for table initialisers at file scope. */
#define BYTES(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})
#define TEXT(t) (const uint8_t *)(t), sizeof(t) - 1

#endif
