/* admin/ui: serves the dashboard's files (broker/admin/www/, compiled in by
 * embed.py) at "/" on the admin port, with headers that keep the page to the
 * node's own resources.
 *
 * The files hold no data and are the same on every node, so they are served
 * without the admin token: a browser cannot send one on a navigation. Every
 * request the page makes for data goes to /api/v1/... with the token in an
 * Authorization header (never in a URL or a cookie), as any API client. */
#include <stdlib.h>
#include <string.h>

#include "admin.h"

/* Only the node's own scripts, styles and connections; no inline script or
 * style, no frames, no plugins, no forms posted anywhere. */
static const char security_headers[] =
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Cross-Origin-Opener-Policy: same-origin\r\n"
    "Cross-Origin-Resource-Policy: same-origin\r\n";

bool broker__admin_ui_serve(struct admin_conn *c, const char *url, size_t len)
{
    const char *end = memchr(url, '?', len);
    size_t path_len = end ? (size_t)(end - url) : len;
    if (path_len == 1 && url[0] == '/') {
        url = "/index.html";
        path_len = strlen(url);
    }
    for (size_t i = 0; i < broker__admin_asset_count; i++) {
        const char *path = broker__admin_asset_paths[i];
        if (strlen(path) != path_len || memcmp(path, url, path_len) != 0)
            continue;
        size_t n = broker__admin_asset_sizes[i];
        char *body = malloc(n ? n : 1); /* transferred to the response; NULL drops the connection */
        if (body)
            memcpy(body, broker__admin_asset_data[i], n);
        broker__admin_respond(c, 200, broker__admin_asset_types[i], body, n, security_headers);
        return true;
    }
    return false;
}
