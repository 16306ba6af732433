/* fs: small file-system helpers shared by the data directory's owners. */
#ifndef STARLING_COMMON_FS_H
#define STARLING_COMMON_FS_H

#include <sys/types.h>

/* mkdir -p: creates path and its missing parents, each with mode (existing
 * directories are left as they are). 0, or -errno (-ENOTDIR when a component
 * exists and is not a directory, -ENAMETOOLONG beyond PATH_MAX). */
int fs_mkdir_p(const char *path, mode_t mode);

#endif
