/* msg: building and releasing reference-counted application messages. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct msg *broker__msg_new(const struct proto_str topic, const struct proto_str payload,
                            const struct proto_props *props, uint8_t qos, bool retain,
                            uint64_t expire_at, const char *origin)
{
    /* only the message properties travel with the message; the alias, the
     * subscription ids and the expiry are per delivery */
    struct proto_props mp = {0};
    struct buf raw = {0};
    if (props) {
        mp.has = props->has & PROTO_HAS_PAYLOAD_FORMAT;
        mp.payload_format = props->payload_format;
        mp.content_type = props->content_type;
        mp.response_topic = props->response_topic;
        mp.correlation_data = props->correlation_data;
        mp.user_props = props->user_props;
        if ((mp.has || mp.content_type.p || mp.response_topic.p || mp.correlation_data.p ||
             mp.user_props.len) &&
            proto_props_encode(&mp, &raw) != 0) {
            free(raw.data);
            return NULL;
        }
    }
    size_t olen = origin ? strlen(origin) + 1 : 0;
    size_t size = sizeof(struct msg) + (size_t)topic.len + 1 + payload.len + raw.len + olen;
    struct msg *m = malloc(size);
    if (!m) {
        free(raw.data);
        return NULL;
    }
    memset(m, 0, sizeof(*m));
    char *p = (char *)(m + 1);
    m->refs = 1;
    m->qos = qos;
    m->retain = retain;
    m->expire_at = expire_at;
    m->topic = p;
    memcpy(p, topic.p, topic.len);
    p[topic.len] = '\0';
    m->topic_len = (uint16_t)topic.len;
    p += topic.len + 1;
    m->payload = (uint8_t *)p;
    if (payload.len)
        memcpy(p, payload.p, payload.len);
    m->payload_len = payload.len;
    p += payload.len;
    m->props_raw = (uint8_t *)p;
    if (raw.len)
        memcpy(p, raw.data, raw.len);
    m->props_len = (uint32_t)raw.len;
    p += raw.len;
    if (origin) {
        memcpy(p, origin, olen);
        m->origin = p;
    }
    free(raw.data);
    if (m->props_len && proto_props_decode(m->props_raw, m->props_len, PROTO_PUBLISH, &m->props) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

void broker__msg_unref(struct msg *m)
{
    if (m && --m->refs == 0)
        free(m);
}
