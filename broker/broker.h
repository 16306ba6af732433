/* broker: one Starling node's MQTT frontend on a libuv loop. */
#ifndef STARLING_BROKER_H
#define STARLING_BROKER_H

#include <uv.h>

#include "config.h"

struct broker;

/* Creates a broker on loop with a copy of cfg, binds its listeners and starts
 * serving. On failure returns a negative error and writes a one-line message
 * into err (e.g. a port in use). *out is owned by the caller: free it with
 * broker_free after the loop has finished. */
int broker_start(uv_loop_t *loop, const struct config *cfg, struct broker **out, char *err, size_t errlen);

/* Begins an orderly stop: listeners close, clients are disconnected (v5 reason
 * 0x8B), and the loop ends once every handle is closed. Also run on SIGINT and
 * SIGTERM. */
void broker_stop(struct broker *b);

/* broker_exit_code() after broker_restart: the process should start again in
 * place, with the same arguments (main() re-executes itself). */
#define BROKER_EXIT_RESTART (-1)

/* Stops the node as broker_stop does, to be started again (a node that was
 * accepted into a cluster restarts to discard its own state and take the
 * cluster's). */
void broker_restart(struct broker *b);

/* Frees what remains after the loop has returned. */
void broker_free(struct broker *b);

/* The exit status the node should end with. */
int broker_exit_code(const struct broker *b);

#endif
