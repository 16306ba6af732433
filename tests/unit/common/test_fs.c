/* common/fs.h: mkdir -p. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"

static char root[64];

static void setup(void)
{
    strcpy(root, "/tmp/starling-fs-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

static bool is_dir(const char *p, mode_t *mode)
{
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
        return false;
    if (mode)
        *mode = st.st_mode & 0777;
    return true;
}

TestSuite(fs, .init = setup, .fini = teardown);

Test(fs, creates_parents_with_mode)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/a/b//c/", root);
    mode_t old = umask(0);
    cr_assert_eq(fs_mkdir_p(p, 0700), 0);
    umask(old);
    mode_t mode;
    snprintf(p, sizeof(p), "%s/a/b/c", root);
    cr_assert(is_dir(p, &mode));
    cr_assert_eq(mode, 0700);
    snprintf(p, sizeof(p), "%s/a", root);
    cr_assert(is_dir(p, &mode));
    cr_assert_eq(mode, 0700);
    cr_assert_eq(fs_mkdir_p(p, 0700), 0, "an existing directory is fine");
}

Test(fs, refuses_a_file_in_the_way)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/file", root);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fclose(f);
    cr_assert_eq(fs_mkdir_p(p, 0750), -ENOTDIR);
    snprintf(p, sizeof(p), "%s/file/sub", root);
    cr_assert_eq(fs_mkdir_p(p, 0750), -ENOTDIR);
}

Test(fs, refuses_empty_and_too_long)
{
    cr_assert_eq(fs_mkdir_p("", 0750), -ENOENT);
    char *p = malloc(5000);
    memset(p, 'x', 4999);
    p[4999] = '\0';
    cr_assert_eq(fs_mkdir_p(p, 0750), -ENAMETOOLONG);
    free(p);
}
