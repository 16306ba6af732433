/* transport_ws: the WebSocket filter of transport.h (RFC 6455), MQTT over
 * WebSocket for the ws and wss listeners. Below it: the client's bytes (from
 * the socket, or from the tls filter on wss); above it: MQTT bytes.
 *
 * The pure pieces (the upgrade request's judgement, the accept key) are
 * declared here too, for the unit tests and the fuzzer. */
#ifndef STARLING_BROKER_TRANSPORT_WS_H
#define STARLING_BROKER_TRANSPORT_WS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "transport.h"

#define TRANSPORT_WS_DEFAULT_PATH "/mqtt"
#define TRANSPORT_WS_MAX_PATH 255
/* the upgrade request, request line and headers, at most */
#define TRANSPORT_WS_MAX_REQUEST 8192u
/* what one frame may carry beyond max_packet_size: a frame may hold the tail
 * of one packet and the start of the next */
#define TRANSPORT_WS_FRAME_SLACK 1024u

/* A ws filter for a listener serving path (copied; "" or NULL: "/mqtt"),
 * taking frames of at most max_frame payload bytes (0: no limit): of a larger
 * one the first max_frame bytes go up, then input returns TRANSPORT_EOF and
 * close() sends 1009, so that the MQTT layer may answer the oversize packet
 * first (0x95) as it does over tcp. *out is freed by its ops->free. 0, -EINVAL
 * (a path that does not start with '/' or is longer than
 * TRANSPORT_WS_MAX_PATH) or -ENOMEM. */
int transport_ws_new(const char *path, uint64_t max_frame, struct filter **out);

/* The broker is shutting down: the close frame f's close() sends says 1001
 * (going away) rather than 1000. */
void transport_ws_going_away(struct filter *f);

/* True once the upgrade has completed (a 101 was appended to down). */
int transport_ws_open(const struct filter *f);

/* Sec-WebSocket-Accept for key (n bytes, borrowed): base64(SHA-1(key GUID))
 * written to out as a C string (29 bytes with the NUL). 0 or -EIO. */
int transport_ws_accept_key(const char *key, size_t n, char out[29]);

/* Judges one complete upgrade request: req (n bytes, borrowed) runs up to and
 * including the empty line that ends its headers. Accepts a GET of path (the
 * part of the URL before any query) with Upgrade: websocket, Connection:
 * upgrade, Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key of 16 bytes in
 * base64; the subprotocol is the first one offered among "mqtt" and
 * "mqttv3.1" (none offered: none echoed; only others offered: refused).
 * Appends the answer to resp: the 101 on success, else an HTTP error with
 * Connection: close, and writes the reason to why. 0 (accepted), -EPROTO
 * (refused: *status is the HTTP status sent) or -ENOMEM. Pure: no I/O. */
int transport_ws_upgrade(const uint8_t *req, size_t n, const char *path, struct buf *resp, int *status,
                         char *why, size_t whylen);

#endif
