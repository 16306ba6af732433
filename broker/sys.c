/* sys: the $SYS/broker/... topics, published every sys_interval seconds as
 * retained messages kept on this node only (they describe this node). */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static void put(struct broker *b, const char *topic, const char *value)
{
    struct msg *m = broker__msg_new(proto_cstr(topic), proto_cstr(value), NULL, 0, true, 0, NULL);
    if (!m)
        return;
    broker__retain_put(b, m, true);
    broker__route_local(b, m);
    broker__msg_unref(m);
}

static void put_u64(struct broker *b, const char *topic, uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
    put(b, topic, buf);
}

void broker__sys_publish(struct broker *b)
{
    char buf[64];
    put(b, "$SYS/broker/version", "starlingd " STARLING_VERSION);
    snprintf(buf, sizeof(buf), "%llu seconds", (unsigned long long)((broker__now(b) - b->started_ms) / 1000));
    put(b, "$SYS/broker/uptime", buf);
    put_u64(b, "$SYS/broker/clients/connected", b->connected);
    put_u64(b, "$SYS/broker/clients/total", b->sessions.count);
    put_u64(b, "$SYS/broker/clients/maximum", b->cfg.max_connections);
    put_u64(b, "$SYS/broker/messages/received", b->stats.msgs_received);
    put_u64(b, "$SYS/broker/messages/sent", b->stats.msgs_sent);
    put_u64(b, "$SYS/broker/messages/dropped", b->stats.publish_dropped);
    put_u64(b, "$SYS/broker/messages/queued bytes", b->queued_bytes);
    put_u64(b, "$SYS/broker/retained messages/refused", b->stats.retained_refused);
    put_u64(b, "$SYS/broker/clients/slow", b->stats.slow_consumers);
    put_u64(b, "$SYS/broker/bytes/received", b->stats.bytes_received);
    put_u64(b, "$SYS/broker/bytes/sent", b->stats.bytes_sent);
    put_u64(b, "$SYS/broker/subscriptions/count", b->sub_count);
    put_u64(b, "$SYS/broker/retained messages/count", b->retained_count);
    put_u64(b, "$SYS/broker/clients/auth failures", b->stats.auth_failures);
}
