/* common/str.h: exact-length copies of length-delimited bytes. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "../check_leaks.h"
#include "str.h"

Test(str, copies_exactly_len_bytes_even_past_a_nul, .fini = check_leaks)
{
    const char in[] = {'a', '\0', 'b', 'c'};
    char *s = str_dup_len(in, sizeof(in));
    cr_assert_not_null(s);
    cr_assert_eq(memcmp(s, in, sizeof(in)), 0, "strndup would have stopped at the NUL");
    cr_assert_eq(s[sizeof(in)], '\0');
    free(s);
    s = str_dup_len(NULL, 0);
    cr_assert_not_null(s);
    cr_assert_eq(s[0], '\0');
    free(s);
}
