/* str: C strings copied from length-delimited bytes. */
#ifndef STARLING_COMMON_STR_H
#define STARLING_COMMON_STR_H

#include <stdlib.h>
#include <string.h>

/* A NUL-terminated copy of exactly len bytes of p (which may hold 0x00:
 * unlike strndup, the copy is never shorter than len, so code that keeps len
 * beside it never reads past the allocation). NULL when memory is short. */
static inline char *str_dup_len(const void *p, size_t len)
{
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    if (len)
        memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

#endif
