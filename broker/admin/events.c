/* admin/events: GET /api/v1/events, the dashboard's live data: a snapshot of
 * the node (GET /api/v1/status plus the counters of /metrics and the commit
 * latency) pushed as a Server-Sent Event every EVENTS_INTERVAL_MS to every
 * stream, so that one page costs one connection and one snapshot a second
 * however many charts it draws.
 *
 * Happy path: a request becomes a stream (broker__admin_stream_begin) and is
 * held here; it gets a snapshot at once, then one per tick of the shared
 * timer, which runs while there is a stream. Failure modes: beyond
 * BROKER_ADMIN_MAX_STREAMS streams a request gets 503; a client that goes away
 * is noticed by the server (its stream is then gone) and released at the next
 * tick; one that does not read (BROKER_ADMIN_STREAM_BACKLOG unwritten) or a
 * snapshot that cannot be built for want of memory closes the stream; the
 * server's stop ends every stream. A connection without a socket (the
 * fuzzer's) gets one snapshot as an ordinary JSON answer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "broker.h"
#include "internal.h"

#define EVENTS_INTERVAL_MS 1000

struct admin_events {
    uv_timer_t timer;
    struct broker *b;
    struct admin_conn *streams[BROKER_ADMIN_MAX_STREAMS]; /* held (broker__admin_hold) */
    int count;
};

/* The event's JSON text (malloc'd), or NULL when out of memory. */
static char *snapshot(struct broker *b)
{
    cJSON *obj = broker__admin_status_build(b);
    bool ok = obj != NULL;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct cluster_status st = {0};
    if (b->cluster)
        cluster_status_get(b->cluster, &st);
    const struct broker_stats *s = &b->stats;
    broker__admin_json_u64(obj, "time_ms", (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000, &ok);
    broker__admin_json_u64(obj, "uptime_s", (broker__now(b) - b->started_ms) / 1000, &ok);
    ok &= cJSON_AddStringToObject(obj, "version", STARLING_VERSION) != NULL;
    broker__admin_json_u64(obj, "messages_received", s->msgs_received, &ok);
    broker__admin_json_u64(obj, "messages_sent", s->msgs_sent, &ok);
    broker__admin_json_u64(obj, "messages_dropped", s->publish_dropped, &ok);
    broker__admin_json_u64(obj, "bytes_received", s->bytes_received, &ok);
    broker__admin_json_u64(obj, "bytes_sent", s->bytes_sent, &ok);
    broker__admin_json_u64(obj, "connections_total", s->connections_total, &ok);
    broker__admin_json_u64(obj, "retained_refused", s->retained_refused, &ok);
    broker__admin_json_u64(obj, "queued_bytes", b->queued_bytes, &ok);
    broker__admin_json_u64(obj, "retained_bytes", b->retained_bytes, &ok);
    broker__admin_json_u64(obj, "commits", st.commits, &ok);
    broker__admin_json_u64(obj, "commit_us_total", st.commit_us_total, &ok);
    char *text = ok ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    return text;
}

static void stream_drop(struct admin_events *ev, int i)
{
    struct admin_conn *c = ev->streams[i];
    broker__admin_stream_close(c);
    broker__admin_release(c);
    ev->streams[i] = ev->streams[--ev->count];
}

/* Sends one snapshot to every stream; drops the ones gone or too slow. */
static void send_all(struct admin_events *ev)
{
    struct buf event = {0};
    char *json = NULL;
    for (int i = ev->count - 1; i >= 0; i--) {
        if (broker__admin_stream_gone(ev->streams[i])) {
            stream_drop(ev, i);
            continue;
        }
        if (!event.len && (!(json = snapshot(ev->b)) || broker__admin_printf(&event, "event: snapshot\ndata: %s\n\n", json) != 0)) {
            LOG(ev->b, LOG_WARN, NULL, "admin: out of memory for the dashboard's events: closing their streams");
            while (ev->count)
                stream_drop(ev, ev->count - 1);
            break;
        }
        int rc = broker__admin_stream_send(ev->streams[i], (const char *)event.data, event.len);
        if (rc) {
            LOG(ev->b, LOG_DEBUG, NULL, "admin: an event stream ends: %s",
                rc == -ENOBUFS ? "the client does not read" : "the connection is gone");
            stream_drop(ev, i);
        }
    }
    free(json);
    buf_free(&event);
}

static void on_tick(uv_timer_t *t)
{
    struct admin_events *ev = t->data;
    send_all(ev);
    if (!ev->count)
        uv_timer_stop(&ev->timer);
}

static void on_events_closed(uv_handle_t *h) { free(h->data); }

/* Releases the streams whose connection is gone; returns how many of the
 * rest come from ip. */
static uint32_t streams_from(struct admin_events *ev, const char *ip)
{
    uint32_t n = 0;
    for (int i = ev->count - 1; i >= 0; i--) {
        if (broker__admin_stream_gone(ev->streams[i]))
            stream_drop(ev, i);
        else
            n += strcmp(broker__admin_conn_ip(ev->streams[i]), ip) == 0;
    }
    return n;
}

void broker__admin_events_get(struct broker *b, struct admin_conn *c, const struct admin_request *r,
                              const struct admin_query *q)
{
    struct admin_events *ev = b->admin.events;
    if (b->stopping) {
        broker__admin_error(c, 503, "the node is stopping", NULL);
        return;
    }
    uint32_t per_peer = b->cfg.admin_max_conns_per_peer / 2 ? b->cfg.admin_max_conns_per_peer / 2 : 1;
    uint32_t mine = ev ? streams_from(ev, broker__admin_conn_ip(c)) : 0;
    const char *full = ev && ev->count == BROKER_ADMIN_MAX_STREAMS
                           ? "too many event streams open on this node (8): close another dashboard"
                       : mine >= per_peer ? "too many event streams from this address: close another dashboard tab"
                                          : NULL;
    if (full) {
        LOG(b, LOG_INFO, NULL, "admin %s: event stream refused: %d streams open, %u from this address", r->peer,
            ev->count, mine);
        broker__admin_error(c, 503, full, NULL);
        return;
    }
    int rc = broker__admin_stream_begin(c, "text/event-stream; charset=utf-8");
    if (rc == -ENOTSUP) {
        char *json = snapshot(b);
        broker__admin_respond(c, 200, "application/json", json, json ? strlen(json) : 0, NULL);
        return;
    }
    if (!rc && !ev && (ev = calloc(1, sizeof(*ev)))) {
        ev->b = b;
        uv_timer_init(b->loop, &ev->timer);
        ev->timer.data = ev;
        b->admin.events = ev;
    }
    if (rc || !ev) {
        broker__admin_stream_close(c); /* closed, or out of memory */
        return;
    }
    broker__admin_hold(c);
    ev->streams[ev->count++] = c;
    LOG(b, LOG_DEBUG, NULL, "admin %s: event stream %d of %d", r->peer, ev->count, BROKER_ADMIN_MAX_STREAMS);
    send_all(ev); /* the page draws at once */
    if (ev->count && !uv_is_active((uv_handle_t *)&ev->timer))
        uv_timer_start(&ev->timer, on_tick, EVENTS_INTERVAL_MS, EVENTS_INTERVAL_MS);
}

void broker__admin_events_stop(struct broker *b)
{
    struct admin_events *ev = b->admin.events;
    if (!ev)
        return;
    while (ev->count)
        stream_drop(ev, ev->count - 1);
    uv_timer_stop(&ev->timer);
    uv_close((uv_handle_t *)&ev->timer, on_events_closed);
    b->admin.events = NULL;
}
