/* bench: topic templates (%i, %c, %u, %s, %rand_N) and the run's random numbers. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

uint64_t bench__rng_next(uint64_t *state)
{
    uint64_t x = *state ? *state : UINT64_C(0x9E3779B97F4A7C15);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

static int add_part(struct bench_tpl *t, size_t *cap, struct bench_tpl_part part)
{
    if (t->nparts == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        struct bench_tpl_part *np = realloc(t->parts, ncap * sizeof(*np));
        if (!np)
            return -ENOMEM;
        t->parts = np;
        *cap = ncap;
    }
    t->parts[t->nparts++] = part;
    return 0;
}

/* A literal slice [from, to) of the source. */
static int add_literal(struct bench_tpl *t, size_t *cap, size_t from, size_t to)
{
    struct bench_tpl_part l = {.kind = BENCH_TPL_LIT, .off = (uint32_t)from,
                               .len = (uint32_t)(to - from)};
    return add_part(t, cap, l);
}

/* %rand_N at s[i]: skip stays 0 when s[i] does not start "%rand_" (a literal
 * '%'); -EINVAL when N is missing or outside [1, UINT32_MAX]. */
static int parse_rand(const char *s, size_t len, size_t i, struct bench_tpl_part *var,
                      size_t *skip)
{
    if (strncmp(s + i, "%rand_", 6) != 0)
        return 0;
    size_t j = i + 6;
    uint64_t n = 0;
    while (j < len && s[j] >= '0' && s[j] <= '9' && n <= UINT32_MAX)
        n = n * 10 + (uint64_t)(s[j++] - '0');
    if (j == i + 6 || n == 0 || n > UINT32_MAX)
        return -EINVAL;
    var->kind = BENCH_TPL_RAND;
    var->n = n;
    *skip = j - i;
    return 0;
}

/* The variable at s[i], if one starts there: its part, and its length in *skip
 * (0 when s[i] is literal). -EINVAL for a bad %rand_N. */
static int parse_var(const char *s, size_t len, size_t i, struct bench_tpl_part *var,
                     size_t *skip)
{
    *skip = 0;
    if (s[i] != '%' || i + 1 >= len)
        return 0;
    switch (s[i + 1]) {
    case 'i': var->kind = BENCH_TPL_SEQ; break;
    case 'c': var->kind = BENCH_TPL_CLIENT_ID; break;
    case 'u': var->kind = BENCH_TPL_USER; break;
    case 's': var->kind = BENCH_TPL_MSG_SEQ; break;
    case 'r': return parse_rand(s, len, i, var, skip);
    default: return 0;
    }
    *skip = 2;
    return 0;
}

int bench__tpl_parse(struct bench_tpl *t, const char *s, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    size_t len = strlen(s);
    if (len > BENCH_MAX_TOPIC_LEN) {
        snprintf(err, errlen, "topic '%.40s...' is longer than %u bytes", s, BENCH_MAX_TOPIC_LEN);
        return -EINVAL;
    }
    t->src = strdup(s);
    if (!t->src)
        goto nomem;
    size_t cap = 0, lit = 0, i = 0;
    while (i < len) {
        struct bench_tpl_part var = {0};
        size_t skip;
        if (parse_var(s, len, i, &var, &skip)) {
            snprintf(err, errlen, "topic '%s': %%rand_N needs N between 1 and %" PRIu32, s,
                     UINT32_MAX);
            bench__tpl_free(t);
            return -EINVAL;
        }
        if (!skip) {
            i++;
            continue;
        }
        if ((i > lit && add_literal(t, &cap, lit, i)) || add_part(t, &cap, var))
            goto nomem;
        if (var.kind == BENCH_TPL_MSG_SEQ || var.kind == BENCH_TPL_RAND)
            t->per_message = true;
        i += skip;
        lit = i;
    }
    /* an empty template is one empty literal */
    if ((len > lit || len == 0) && add_literal(t, &cap, lit, len))
        goto nomem;
    return 0;
nomem:
    bench__tpl_free(t);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
}

void bench__tpl_free(struct bench_tpl *t)
{
    free(t->src);
    free(t->parts);
    memset(t, 0, sizeof(*t));
}

/* Appends n bytes of p at *len, keeping room for the NUL; counts past cap. */
static void put(char *out, size_t cap, size_t *len, const char *p, size_t n)
{
    if (*len + 1 < cap) {
        size_t room = cap - 1 - *len;
        memcpy(out + *len, p, n < room ? n : room);
    }
    *len += n;
}

size_t bench__tpl_expand(const struct bench_tpl *t, const struct bench_tpl_ctx *ctx, char *out,
                         size_t cap)
{
    size_t len = 0;
    char num[24];
    for (size_t i = 0; i < t->nparts; i++) {
        const struct bench_tpl_part *p = &t->parts[i];
        switch (p->kind) {
        case BENCH_TPL_LIT:
            put(out, cap, &len, t->src + p->off, p->len);
            break;
        case BENCH_TPL_SEQ:
            put(out, cap, &len, num, (size_t)snprintf(num, sizeof(num), "%" PRIu64, ctx->seq));
            break;
        case BENCH_TPL_CLIENT_ID:
            put(out, cap, &len, ctx->client_id, strlen(ctx->client_id));
            break;
        case BENCH_TPL_USER:
            if (ctx->user)
                put(out, cap, &len, ctx->user, strlen(ctx->user));
            else
                put(out, cap, &len, "%u", 2);
            break;
        case BENCH_TPL_MSG_SEQ:
            put(out, cap, &len, num,
                (size_t)snprintf(num, sizeof(num), "%" PRIu64, ctx->msg_seq));
            break;
        case BENCH_TPL_RAND: {
            uint64_t v = bench__rng_next(ctx->rng) % p->n + 1;
            put(out, cap, &len, num, (size_t)snprintf(num, sizeof(num), "%" PRIu64, v));
            break;
        }
        }
    }
    if (cap)
        out[len < cap ? len : cap - 1] = '\0';
    return len;
}
