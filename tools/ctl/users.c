/* ctl users: starlingctl's users and acl commands, over the admin API's
 * /api/v1/users and /api/v1/acl (the users and ACL rules of the replicated
 * state). A password comes from --password, else from the terminal (asked
 * twice, not echoed), else from the first line of standard input. A file
 * to import larger than one request goes in parts, all checked first. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "ctl.h"

#define CTL_MAX_IMPORT (16u << 20) /* bytes of a file to import */
/* A file is sent in parts of at most this many bytes: the admin API takes a
 * request of 64 KiB at most, headers included. */
#define CTL_IMPORT_PART 60000u
#define CTL_MAX_PASSWORD 65535u

static int fail(const char *fmt, const char *arg)
{
    fputs("starlingctl: ", stderr);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return CTL_EXIT_FAILED;
}

static int usage(const char *msg)
{
    fprintf(stderr, "starlingctl: %s (see --help)\n", msg);
    return CTL_EXIT_USAGE;
}

/* The request; 0 with the response in r, else the exit code. */
static int request(const struct ctl_call *o, const char *method, const char *target, const char *body,
                   struct ctl_response *r)
{
    char err[600];
    int rc = ctl_http_request(o->target, method, target, o->token, body, o->timeout, r, err, sizeof(err));
    if (rc == 0)
        return 0;
    fprintf(stderr, "starlingctl: %s\n", err);
    return rc == CTL_EREACH ? CTL_EXIT_UNREACHABLE : CTL_EXIT_FAILED;
}

static void print_raw(const struct ctl_response *r)
{
    fwrite(r->body, 1, r->len, stdout);
    if (!r->len || r->body[r->len - 1] != '\n')
        putchar('\n');
}

/* The node's answer to a change: what it did, or its refusal (exit 1). */
static int change(const struct ctl_call *o, const char *target, const char *body, const char *done)
{
    struct ctl_response r;
    int code = request(o, "POST", target, body, &r);
    if (code)
        return code;
    cJSON *doc = cJSON_ParseWithLength(r.body, r.len);
    if (o->json)
        print_raw(&r);
    if (r.status != 200) {
        const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "error"));
        if (msg)
            fprintf(stderr, "starlingctl: %s\n", msg);
        else
            fprintf(stderr, "starlingctl: %s answered HTTP %d\n", o->target->url, r.status);
        code = CTL_EXIT_FAILED;
    } else if (!o->json) {
        const cJSON *created = cJSON_GetObjectItemCaseSensitive(doc, "created");
        const cJSON *replaced = cJSON_GetObjectItemCaseSensitive(doc, "replaced");
        if (cJSON_IsNumber(created) && cJSON_IsNumber(replaced))
            printf("%s: %.0f new, %.0f replaced\n", done, created->valuedouble, replaced->valuedouble);
        else
            printf("%s\n", done);
    }
    cJSON_Delete(doc);
    ctl_response_free(&r);
    return code;
}

/* One line of f without its line end into buf; false at EOF or when too long. */
static bool read_line(FILE *f, char *buf, size_t cap)
{
    if (!fgets(buf, (int)cap, f))
        return false;
    size_t n = strlen(buf);
    if (n && buf[n - 1] == '\n')
        buf[--n] = '\0';
    else if (!feof(f))
        return false; /* longer than cap */
    if (n && buf[n - 1] == '\r')
        buf[--n] = '\0';
    return true;
}

static bool ask(const char *prompt, char *buf, size_t cap)
{
    struct termios old, quiet;
    if (tcgetattr(STDIN_FILENO, &old) != 0)
        return false;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    /* echo off before the prompt: what is typed once it shows is kept */
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    fputs(prompt, stderr);
    fflush(stderr);
    bool ok = read_line(stdin, buf, cap);
    tcsetattr(STDIN_FILENO, TCSANOW, &old);
    fputc('\n', stderr);
    return ok;
}

/* The password: --password, the terminal, or standard input's first line.
 * Returns -1 to go on, else the exit code. */
static int password_of(const struct ctl_call *o, char *buf, size_t cap)
{
    if (o->password) {
        if (strlen(o->password) >= cap)
            return usage("--password is longer than 65535 bytes");
        snprintf(buf, cap, "%s", o->password);
    } else if (isatty(STDIN_FILENO)) {
        char again[CTL_MAX_PASSWORD + 2];
        if (!ask("Password: ", buf, cap) || !ask("Password again: ", again, sizeof(again)))
            return fail("%s", "no password read");
        bool same = strcmp(buf, again) == 0;
        memset(again, 0, sizeof(again));
        if (!same)
            return fail("%s", "the passwords differ");
    } else if (!read_line(stdin, buf, cap)) {
        return fail("%s", "no password given (--password, or one line on standard input)");
    }
    if (!buf[0])
        return fail("%s", "the password is empty");
    return -1;
}

/* The whole of path, NUL-terminated, or NULL (the reason printed). */
static char *read_file(const char *path)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "starlingctl: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(CTL_MAX_IMPORT + 1);
    size_t n = text ? fread(text, 1, CTL_MAX_IMPORT + 1, f) : 0;
    bool err = ferror(f);
    if (f != stdin)
        fclose(f);
    if (!text || err || n > CTL_MAX_IMPORT || memchr(text, 0, n)) {
        fprintf(stderr, "starlingctl: %s: %s\n", path,
                !text ? "out of memory"
                : err ? "cannot be read"
                : n > CTL_MAX_IMPORT
                    ? "larger than 16 MiB"
                    : "contains a NUL byte");
        free(text);
        return NULL;
    }
    text[n] = '\0';
    return text;
}

/* One part of a file: the lines [start, start + len) of the text, numbered
 * from first_line, sent after prefix (an acl_file's `user` line that the part
 * continues, or ""). */
struct part {
    size_t start, len;
    unsigned first_line;
    const char *prefix;
    size_t prefix_len;
};

/* The `user NAME` line l (len bytes) is, as the ACL parser reads it. */
static bool user_line(const char *l, size_t len)
{
    while (len && (*l == ' ' || *l == '\t'))
        l++, len--;
    return len >= 4 && memcmp(l, "user", 4) == 0 && (len == 4 || l[4] == ' ' || l[4] == '\t');
}

/* Splits text at line ends into parts that fit a request; *n of them
 * (malloc'd), or NULL with the reason printed. */
static struct part *split(const char *text, size_t len, bool acl, size_t *n)
{
    size_t cap = len / (CTL_IMPORT_PART / 2) + 2, count = 0, pos = 0;
    struct part *parts = calloc(cap, sizeof(*parts));
    const char *user = "";
    size_t user_len = 0;
    unsigned line = 1;
    if (!parts)
        return NULL;
    while (pos < len) {
        struct part *p = &parts[count++];
        *p = (struct part){pos, 0, line, user, user_len};
        while (pos < len) {
            const char *nl = memchr(text + pos, '\n', len - pos);
            size_t l = nl ? (size_t)(nl - text - pos) + 1 : len - pos;
            if (p->prefix_len + p->len + l > CTL_IMPORT_PART) {
                if (p->len)
                    break;
                fprintf(stderr, "starlingctl: line %u is longer than %u bytes\n", line, CTL_IMPORT_PART);
                free(parts);
                return NULL;
            }
            if (acl && user_line(text + pos, l)) {
                user = text + pos;
                user_len = l;
            }
            p->len += l;
            pos += l;
            line++;
        }
        if (count == cap) {
            struct part *more = realloc(parts, 2 * cap * sizeof(*parts));
            if (!more) {
                free(parts);
                return NULL;
            }
            parts = more;
            cap *= 2;
        }
    }
    *n = count;
    return parts;
}

/* The request body of a part: its prefix and its lines, NUL-terminated. */
static char *part_body(const char *text, const struct part *p)
{
    char *body = malloc(p->prefix_len + p->len + 1);
    if (body) {
        memcpy(body, p->prefix, p->prefix_len);
        memcpy(body + p->prefix_len, text + p->start, p->len);
        body[p->prefix_len + p->len] = '\0';
    }
    return body;
}

/* A refusal of a part's check: "line N: ..." counted in the whole file. */
static int part_refused(const struct part *p, const struct ctl_response *r)
{
    cJSON *doc = cJSON_ParseWithLength(r->body, r->len);
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "error"));
    unsigned n;
    int at = 0;
    if (msg && sscanf(msg, "line %u: %n", &n, &at) == 1 && at > 0)
        fprintf(stderr, "starlingctl: line %u: %s\n", p->first_line + n - 1 - (p->prefix_len ? 1 : 0), msg + at);
    else if (msg)
        fprintf(stderr, "starlingctl: %s\n", msg);
    else
        fprintf(stderr, "starlingctl: the node answered HTTP %d\n", r->status);
    cJSON_Delete(doc);
    return CTL_EXIT_FAILED;
}

/* A file larger than one request: every part is checked first (a bad line
 * anywhere imports nothing), then imported in turn. */
static int import_parts(const struct ctl_call *o, const char *target, const char *text, const char *path, bool acl)
{
    size_t n, created = 0, replaced = 0;
    struct part *parts = split(text, strlen(text), acl, &n);
    if (!parts)
        return CTL_EXIT_FAILED;
    char url[64];
    int code = 0;
    snprintf(url, sizeof(url), "%s?check=1", target);
    for (size_t i = 0; i <= 2 * n && !code; i++) {
        if (i == n)
            continue; /* every part checked: now the imports */
        const struct part *p = &parts[i < n ? i : i - n - 1];
        char *body = part_body(text, p);
        struct ctl_response r;
        if (!body) {
            code = fail("%s", "out of memory");
            break;
        }
        code = request(o, "POST", i < n ? url : target, body, &r);
        free(body);
        if (code)
            break;
        cJSON *doc = cJSON_ParseWithLength(r.body, r.len);
        if (r.status != 200 && i < n) {
            code = part_refused(p, &r);
        } else if (r.status != 200) {
            const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "error"));
            fprintf(stderr, "starlingctl: %s: part %zu of %zu (from line %u) failed: %s; the parts before were "
                            "imported (%zu new, %zu replaced)\n",
                    path, i - n, n, p->first_line, msg ? msg : "no answer", created, replaced);
            code = CTL_EXIT_FAILED;
        } else if (i > n) {
            created += (size_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(doc, "created"));
            replaced += (size_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(doc, "replaced"));
        }
        cJSON_Delete(doc);
        ctl_response_free(&r);
    }
    free(parts);
    if (code)
        return code;
    if (o->json)
        printf("{\"result\":\"imported\",\"created\":%zu,\"replaced\":%zu,\"parts\":%zu}\n", created, replaced, n);
    else
        printf("imported %.256s: %zu new, %zu replaced (in %zu parts)\n", path, created, replaced, n);
    return CTL_EXIT_OK;
}

static int import(const struct ctl_call *o, const char *target, const char *path, bool acl)
{
    char *text = read_file(path);
    if (!text)
        return CTL_EXIT_FAILED;
    int code;
    if (strlen(text) > CTL_IMPORT_PART) {
        code = import_parts(o, target, text, path, acl);
    } else {
        char done[300];
        snprintf(done, sizeof(done), "imported %.256s", path);
        code = change(o, target, text, done);
    }
    free(text);
    return code;
}

/* {"name": name[, "password": pw]} */
static char *user_body(const char *name, const char *password)
{
    cJSON *obj = cJSON_CreateObject();
    if (!obj || !cJSON_AddStringToObject(obj, "name", name) ||
        (password && !cJSON_AddStringToObject(obj, "password", password))) {
        cJSON_Delete(obj);
        return NULL;
    }
    char *text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    return text;
}

static int list(const struct ctl_call *o, const char *path, const char *field, bool users)
{
    struct ctl_response r;
    char target[64];
    if (o->limit >= 0)
        snprintf(target, sizeof(target), "%s?limit=%ld", path, o->limit);
    else
        snprintf(target, sizeof(target), "%s", path);
    int code = request(o, "GET", target, NULL, &r);
    if (code)
        return code;
    cJSON *doc = cJSON_ParseWithLength(r.body, r.len);
    if (r.status != 200 || o->json || !doc) {
        const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "error"));
        if (r.status == 200)
            print_raw(&r);
        else if (msg)
            fprintf(stderr, "starlingctl: %s\n", msg);
        else
            fprintf(stderr, "starlingctl: %s answered HTTP %d\n", o->target->url, r.status);
        code = r.status == 200 ? CTL_EXIT_OK : CTL_EXIT_FAILED;
        cJSON_Delete(doc);
        ctl_response_free(&r);
        return code;
    }
    const cJSON *e, *rows = cJSON_GetObjectItemCaseSensitive(doc, field);
    int n = 0;
    if (users)
        printf("%-32s  %-8s  %s\n", "NAME", "SOURCE", "SCRAM");
    else
        printf("%-9s  %-16s  %-9s  %-32s  %s\n", "KIND", "USER", "ACCESS", "TOPIC", "SOURCE");
    cJSON_ArrayForEach(e, rows)
    {
        const char *user = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, users ? "name" : "user"));
        const char *source = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "source"));
        if (users)
            printf("%-32s  %-8s  %s\n", user ? user : "", source ? source : "",
                   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "scram")) ? "yes" : "no");
        else {
            const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "kind"));
            const char *access = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "access"));
            const char *topic = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "topic"));
            printf("%-9s  %-16s  %-9s  %-32s  %s\n", kind ? kind : "", user ? user : "-", access ? access : "",
                   topic ? topic : "", source ? source : "");
        }
        n++;
    }
    double count = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(doc, "count"));
    if (count > n)
        printf("%d of %.0f %ss (--limit to see more)\n", n, count, users ? "user" : "rule");
    else
        printf("%d %s%s\n", n, users ? "user" : "rule", n == 1 ? "" : "s");
    cJSON_Delete(doc);
    ctl_response_free(&r);
    return CTL_EXIT_OK;
}

int ctl_users_cmd(const struct ctl_call *o, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "";
    int n = argc - 2;
    if (argc < 2)
        return usage("users needs one of list, add, passwd, del, import");
    if (o->password && strcmp(sub, "add") && strcmp(sub, "passwd"))
        return usage("--password goes with users add and users passwd");
    if (o->limit >= 0 && strcmp(sub, "list"))
        return usage("--limit goes with users list");
    if (!strcmp(sub, "list"))
        return n ? usage("users list takes no argument") : list(o, "/api/v1/users", "users", true);
    if (!strcmp(sub, "import"))
        return n != 1 ? usage("users import needs one FILE (a mosquitto_passwd file; - for stdin)")
                      : import(o, "/api/v1/users/import", argv[2], false);
    bool add = !strcmp(sub, "add"), passwd = !strcmp(sub, "passwd");
    bool del = !strcmp(sub, "del") || !strcmp(sub, "delete");
    if (!add && !passwd && !del) {
        fprintf(stderr, "starlingctl: unknown users command \"%s\" (see --help)\n", sub);
        return CTL_EXIT_USAGE;
    }
    if (n != 1)
        return usage(n ? "users add, passwd and del take one NAME" : "users add, passwd and del need a NAME");
    const char *name = argv[2];
    static char password[CTL_MAX_PASSWORD + 2];
    if (!del) {
        int code = password_of(o, password, sizeof(password));
        if (code >= 0)
            return code;
    }
    char *body = user_body(name, del ? NULL : password);
    memset(password, 0, sizeof(password));
    if (!body)
        return fail("%s", "out of memory");
    char done[300];
    snprintf(done, sizeof(done), "user %.256s %s", name, add ? "added" : passwd ? "password changed" : "deleted");
    int code = change(o, add ? "/api/v1/users/add" : passwd ? "/api/v1/users/passwd" : "/api/v1/users/delete", body,
                      done);
    memset(body, 0, strlen(body));
    free(body);
    return code;
}

int ctl_acl_cmd(const struct ctl_call *o, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "";
    int n = argc - 2;
    if (argc < 2)
        return usage("acl needs one of list, add, del, import");
    bool add = !strcmp(sub, "add"), del = !strcmp(sub, "del") || !strcmp(sub, "delete");
    if ((o->acl_user || o->acl_pattern || o->acl_anonymous) && !add && !del)
        return usage("--user, --pattern and --anonymous go with acl add and acl del");
    if (o->limit >= 0 && strcmp(sub, "list"))
        return usage("--limit goes with acl list");
    if (!strcmp(sub, "list"))
        return n ? usage("acl list takes no argument") : list(o, "/api/v1/acl", "rules", false);
    if (!strcmp(sub, "import"))
        return n != 1 ? usage("acl import needs one FILE (a Mosquitto acl_file; - for stdin)")
                      : import(o, "/api/v1/acl/import", argv[2], true);
    if (!add && !del) {
        fprintf(stderr, "starlingctl: unknown acl command \"%s\" (see --help)\n", sub);
        return CTL_EXIT_USAGE;
    }
    if ((o->acl_user != NULL) + o->acl_pattern + o->acl_anonymous > 1)
        return usage("give one of --user USER, --pattern and --anonymous");
    if (add ? n != 2 : (n != 1 && n != 2))
        return usage(add ? "acl add needs ACCESS TOPIC (ACCESS: read, write, readwrite or deny)"
                         : "acl del needs TOPIC (or ACCESS TOPIC)");
    const char *access = n == 2 ? argv[2] : NULL, *topic = argv[n == 2 ? 3 : 2];
    if (access && strcmp(access, "read") && strcmp(access, "write") && strcmp(access, "readwrite") &&
        strcmp(access, "deny")) {
        fprintf(stderr, "starlingctl: access \"%s\" is not one of read, write, readwrite, deny (see --help)\n",
                access);
        return CTL_EXIT_USAGE;
    }
    const char *kind = o->acl_user ? "user" : o->acl_pattern ? "pattern" : "anonymous";
    cJSON *obj = cJSON_CreateObject();
    bool ok = obj && cJSON_AddStringToObject(obj, "kind", kind) && cJSON_AddStringToObject(obj, "topic", topic) &&
              (!o->acl_user || cJSON_AddStringToObject(obj, "user", o->acl_user)) &&
              (!add || cJSON_AddStringToObject(obj, "access", access));
    char *body = ok ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (!body)
        return fail("%s", "out of memory");
    char done[400];
    snprintf(done, sizeof(done), "rule %s %s%s%.128s %s %.128s", add ? "added:" : "deleted:", kind,
             o->acl_user ? " " : "", o->acl_user ? o->acl_user : "", add ? access : "", topic);
    int code = change(o, add ? "/api/v1/acl/add" : "/api/v1/acl/delete", body, done);
    free(body);
    return code;
}
