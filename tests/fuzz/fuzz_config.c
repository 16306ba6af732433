/* libFuzzer target for the config file parser (broker/config.c): the input
 * is the text of a config file, read by config_load_file from a memory file
 * (memfd). A file that loads must print (config_print) to a file that loads
 * again to the same configuration; one that does not must leave the
 * configuration untouched and say why. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

static int fd = -1, fd2 = -1;
static char path[64], path2[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fd = memfd_create("fuzz-config", 0);
    fd2 = memfd_create("fuzz-config-printed", 0);
    if (fd < 0 || fd2 < 0) {
        perror("fuzz_config: memfd_create");
        exit(1);
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    snprintf(path2, sizeof(path2), "/proc/self/fd/%d", fd2);
    return 0;
}

static void fill(int f, const void *data, size_t size)
{
    if (ftruncate(f, 0) != 0 || pwrite(f, data, size, 0) != (ssize_t)size)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config c, before;
    char err[512] = "";
    config_defaults(&c);
    before = c;
    fill(fd, data, size);
    int rc = config_load_file(&c, path, err, sizeof(err));
    if (rc != 0) {
        if (memcmp(&c, &before, sizeof(c)) != 0 || err[0] == '\0') {
            fprintf(stderr, "fuzz_config: a refused file changed the config or gave no reason\n");
            abort();
        }
        return 0;
    }
    /* print and load again */
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    config_print(&c, m);
    fclose(m);
    fill(fd2, text, len);
    struct config again;
    config_defaults(&again);
    rc = config_load_file(&again, path2, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "fuzz_config: the printed config does not load: %s\n---\n%s---\n", err, text);
        abort();
    }
    free(text);
    return 0;
}
