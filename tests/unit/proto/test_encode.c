/* Tests for proto/encode.c: exact encodings, the v3 mappings and short forms, and
 * encode -> frame -> decode round trips of every packet type at every version. */
#include <stdlib.h>
#include <string.h>

#include "../../../proto/proto.h"
#include "helpers.h"

static const uint8_t versions[] = {PROTO_V31, PROTO_V311, PROTO_V5};

/* Raw user properties: ("k", "v"), ("name", "") */
static const uint8_t user_raw[] = {0x26, 0, 1, 'k', 0, 1, 'v',
                                   0x26, 0, 4, 'n', 'a', 'm', 'e', 0, 0};

static struct proto_str user_props(void)
{
    struct proto_str s = {user_raw, sizeof user_raw};
    return s;
}

static bool str_eq(struct proto_str a, struct proto_str b)
{
    if ((a.p == NULL) != (b.p == NULL) && !(a.len == 0 && b.len == 0))
        return false;
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static void assert_props_eq(const struct proto_props *a, const struct proto_props *b)
{
    cr_assert_eq(a->has, b->has, "has %#x vs %#x", a->has, b->has);
    cr_assert_eq(a->payload_format, b->payload_format);
    cr_assert_eq(a->message_expiry, b->message_expiry);
    cr_assert(str_eq(a->content_type, b->content_type));
    cr_assert(str_eq(a->response_topic, b->response_topic));
    cr_assert(str_eq(a->correlation_data, b->correlation_data));
    cr_assert_eq(a->sub_id_count, b->sub_id_count);
    for (uint32_t i = 0; i < a->sub_id_count && i < PROTO_MAX_DECODED_SUB_IDS; i++)
        cr_assert_eq(a->sub_ids[i], b->sub_ids[i]);
    cr_assert_eq(a->session_expiry, b->session_expiry);
    cr_assert(str_eq(a->assigned_client_id, b->assigned_client_id));
    cr_assert_eq(a->server_keep_alive, b->server_keep_alive);
    cr_assert(str_eq(a->auth_method, b->auth_method));
    cr_assert(str_eq(a->auth_data, b->auth_data));
    cr_assert_eq(a->request_problem_info, b->request_problem_info);
    cr_assert_eq(a->will_delay, b->will_delay);
    cr_assert_eq(a->request_response_info, b->request_response_info);
    cr_assert(str_eq(a->response_info, b->response_info));
    cr_assert(str_eq(a->server_reference, b->server_reference));
    cr_assert(str_eq(a->reason_string, b->reason_string));
    cr_assert_eq(a->receive_maximum, b->receive_maximum);
    cr_assert_eq(a->topic_alias_maximum, b->topic_alias_maximum);
    cr_assert_eq(a->topic_alias, b->topic_alias);
    cr_assert_eq(a->maximum_qos, b->maximum_qos);
    cr_assert_eq(a->retain_available, b->retain_available);
    cr_assert_eq(a->maximum_packet_size, b->maximum_packet_size);
    cr_assert_eq(a->wildcard_sub_available, b->wildcard_sub_available);
    cr_assert_eq(a->sub_id_available, b->sub_id_available);
    cr_assert_eq(a->shared_sub_available, b->shared_sub_available);
    cr_assert(str_eq(a->user_props, b->user_props));
}

/* What the decoder should give back for props sent at this version. */
static struct proto_props expect_props(const struct proto_props *sent, uint8_t version)
{
    struct proto_props none;
    memset(&none, 0, sizeof none);
    return version == PROTO_V5 ? *sent : none;
}

/* Encodes p, checks that it frames as exactly one packet, decodes it into *out. */
static void round_trip(const struct proto_packet *p, uint8_t version, struct buf *w,
                       struct proto_packet *out)
{
    memset(w, 0, sizeof *w);
    int rc = proto_encode(p, version, w);
    cr_assert_eq(rc, 0, "encode %s v%u: %s", proto_type_name(p->type), version,
                 proto_error_name(rc));
    size_t framed = 0;
    cr_assert_eq(proto_frame(w->data, w->len, 0, &framed), 0);
    cr_assert_eq(framed, w->len);
    rc = proto_decode(w->data, w->len, p->type == PROTO_CONNECT ? 0 : version, out);
    cr_assert_eq(rc, 0, "decode %s v%u: %s", proto_type_name(p->type), version,
                 proto_error_name(rc));
    cr_assert_eq(out->type, p->type);
}

Test(encode, connect_round_trip)
{
    for (size_t v = 0; v < sizeof versions; v++) {
        uint8_t version = versions[v];
        for (int variant = 0; variant < 2; variant++) {
            struct proto_packet p, d;
            struct buf w;
            memset(&p, 0, sizeof p);
            p.type = PROTO_CONNECT;
            struct proto_connect *c = &p.u.connect;
            c->version = version;
            c->clean_start = variant == 0;
            c->keep_alive = 65535;
            c->client_id = proto_cstr("client-1");
            if (variant == 0) {
                c->will = true;
                c->will_qos = 2;
                c->will_retain = true;
                c->will_topic = proto_cstr("last/will");
                c->will_payload = proto_cstr("gone");
                c->has_username = true;
                c->username = proto_cstr("user");
                c->has_password = true;
                c->password = proto_cstr("secret");
                c->will_props.has = PROTO_HAS_WILL_DELAY | PROTO_HAS_PAYLOAD_FORMAT |
                                    PROTO_HAS_MESSAGE_EXPIRY;
                c->will_props.will_delay = 30;
                c->will_props.payload_format = 1;
                c->will_props.message_expiry = 99;
                c->will_props.content_type = proto_cstr("text/plain");
                c->will_props.response_topic = proto_cstr("resp");
                c->will_props.correlation_data = proto_cstr("");
                c->will_props.user_props = user_props();
            }
            c->props.has = PROTO_HAS_SESSION_EXPIRY | PROTO_HAS_RECEIVE_MAXIMUM |
                           PROTO_HAS_MAXIMUM_PACKET_SIZE | PROTO_HAS_TOPIC_ALIAS_MAXIMUM |
                           PROTO_HAS_REQUEST_PROBLEM_INFO | PROTO_HAS_REQUEST_RESPONSE_INFO;
            c->props.session_expiry = 0xFFFFFFFF;
            c->props.receive_maximum = 100;
            c->props.maximum_packet_size = 1 << 20;
            c->props.topic_alias_maximum = 10;
            c->props.request_problem_info = 0;
            c->props.request_response_info = 1;
            c->props.auth_method = proto_cstr("SCRAM-SHA-1");
            c->props.auth_data = proto_cstr("\x01\x02");
            c->props.user_props = user_props();
            round_trip(&p, version, &w, &d);
            const struct proto_connect *e = &d.u.connect;
            cr_assert_eq(e->version, version);
            cr_assert_eq(e->clean_start, c->clean_start);
            cr_assert_eq(e->keep_alive, c->keep_alive);
            cr_assert(str_eq(e->client_id, c->client_id));
            cr_assert_eq(e->will, c->will);
            cr_assert_eq(e->will_qos, c->will_qos);
            cr_assert_eq(e->will_retain, c->will_retain);
            cr_assert(str_eq(e->will_topic, c->will_topic));
            cr_assert(str_eq(e->will_payload, c->will_payload));
            cr_assert_eq(e->has_username, c->has_username);
            cr_assert(str_eq(e->username, c->username));
            cr_assert_eq(e->has_password, c->has_password);
            cr_assert(str_eq(e->password, c->password));
            struct proto_props ep = expect_props(&c->props, version);
            assert_props_eq(&e->props, &ep);
            if (c->will) {
                ep = expect_props(&c->will_props, version);
                assert_props_eq(&e->will_props, &ep);
            }
            proto_packet_release(&d);
            free(w.data);
        }
    }
}

Test(encode, connack_round_trip)
{
    for (size_t v = 0; v < sizeof versions; v++) {
        uint8_t version = versions[v];
        struct proto_packet p, d;
        struct buf w;
        memset(&p, 0, sizeof p);
        p.type = PROTO_CONNACK;
        p.u.connack.session_present = true;
        p.u.connack.reason = 0;
        struct proto_props *pr = &p.u.connack.props;
        pr->has = PROTO_HAS_SESSION_EXPIRY | PROTO_HAS_SERVER_KEEP_ALIVE |
                  PROTO_HAS_RECEIVE_MAXIMUM | PROTO_HAS_TOPIC_ALIAS_MAXIMUM |
                  PROTO_HAS_MAXIMUM_QOS | PROTO_HAS_RETAIN_AVAILABLE |
                  PROTO_HAS_MAXIMUM_PACKET_SIZE | PROTO_HAS_WILDCARD_SUB_AVAILABLE |
                  PROTO_HAS_SUB_ID_AVAILABLE | PROTO_HAS_SHARED_SUB_AVAILABLE;
        pr->session_expiry = 7;
        pr->server_keep_alive = 20;
        pr->receive_maximum = 65535;
        pr->topic_alias_maximum = 0;
        pr->maximum_qos = 1;
        pr->retain_available = 1;
        pr->maximum_packet_size = 268435460;
        pr->wildcard_sub_available = 1;
        pr->sub_id_available = 0;
        pr->shared_sub_available = 1;
        pr->assigned_client_id = proto_cstr("auto-123");
        pr->response_info = proto_cstr("resp/");
        pr->server_reference = proto_cstr("other:1883");
        pr->reason_string = proto_cstr("welcome");
        pr->auth_method = proto_cstr("m");
        pr->auth_data = proto_cstr("d");
        pr->user_props = user_props();
        round_trip(&p, version, &w, &d);
        cr_assert_eq(d.u.connack.session_present, version != PROTO_V31);
        cr_assert_eq(d.u.connack.reason, 0);
        struct proto_props ep = expect_props(pr, version);
        assert_props_eq(&d.u.connack.props, &ep);
        free(w.data);
    }
}

Test(encode, publish_round_trip)
{
    for (size_t v = 0; v < sizeof versions; v++) {
        uint8_t version = versions[v];
        for (uint8_t qos = 0; qos <= 2; qos++) {
            struct proto_packet p, d;
            struct buf w;
            memset(&p, 0, sizeof p);
            p.type = PROTO_PUBLISH;
            struct proto_publish *m = &p.u.publish;
            m->qos = qos;
            m->dup = qos > 0;
            m->retain = qos == 1;
            m->topic = proto_cstr("sensors/\xc3\xa9t\xc3\xa9/temp");
            m->packet_id = qos ? (uint16_t)(1000 + qos) : 0;
            m->payload = proto_cstr(qos == 2 ? "" : "21.5");
            m->props.has = PROTO_HAS_PAYLOAD_FORMAT | PROTO_HAS_MESSAGE_EXPIRY |
                           PROTO_HAS_TOPIC_ALIAS | PROTO_HAS_SUB_ID;
            m->props.payload_format = 1;
            m->props.message_expiry = 3600;
            m->props.topic_alias = 3;
            m->props.content_type = proto_cstr("application/json");
            m->props.response_topic = proto_cstr("reply/here");
            m->props.correlation_data = proto_cstr("\x00\x01\xff");
            m->props.sub_id_count = 3;
            m->props.sub_ids[0] = 1;
            m->props.sub_ids[1] = 16384;
            m->props.sub_ids[2] = PROTO_MAX_SUB_ID;
            m->props.user_props = user_props();
            round_trip(&p, version, &w, &d);
            const struct proto_publish *e = &d.u.publish;
            cr_assert_eq(e->qos, qos);
            cr_assert_eq(e->dup, m->dup);
            cr_assert_eq(e->retain, m->retain);
            cr_assert(str_eq(e->topic, m->topic));
            cr_assert_eq(e->packet_id, m->packet_id);
            cr_assert(str_eq(e->payload, m->payload));
            struct proto_props ep = expect_props(&m->props, version);
            assert_props_eq(&e->props, &ep);
            cr_assert_eq(proto_publish_size(m, version), w.len);

            /* header + payload written separately give the same bytes */
            struct buf h = {0};
            cr_assert_eq(proto_publish_encode_header(m, version, &h), 0);
            cr_assert_eq(h.len + m->payload.len, w.len);
            cr_assert_eq(memcmp(h.data, w.data, h.len), 0);
            cr_assert_eq(memcmp(w.data + h.len, m->payload.p, m->payload.len), 0);
            free(h.data);
            free(w.data);
        }
    }
}

/* A fan-out encodes many headers into one growing buffer. */
Test(encode, publish_header_appends)
{
    struct proto_publish m;
    memset(&m, 0, sizeof m);
    m.qos = 1;
    m.topic = proto_cstr("t");
    m.payload.p = (const uint8_t *)"0123456789";
    m.payload.len = 10;
    struct buf w = {0};
    for (int i = 1; i <= 1000; i++) {
        m.packet_id = (uint16_t)i;
        cr_assert_eq(proto_publish_encode_header(&m, PROTO_V311, &w), 0);
    }
    /* each header: 0x32, rl 15, topic (3), id (2) = 7 bytes */
    cr_assert_eq(w.len, 7000);
    cr_assert_geq(w.cap, w.len);
    cr_assert_eq(w.data[7 * 999], 0x32);
    cr_assert_eq(w.data[7 * 999 + 1], 15);
    cr_assert_eq(w.data[7 * 999 + 5], 1000 >> 8);
    cr_assert_eq(w.data[7 * 999 + 6], 1000 & 0xFF);
    free(w.data);
}

Test(encode, ack_round_trip)
{
    static const uint8_t types[] = {PROTO_PUBACK, PROTO_PUBREC, PROTO_PUBREL, PROTO_PUBCOMP};
    for (size_t v = 0; v < sizeof versions; v++) {
        for (size_t t = 0; t < sizeof types; t++) {
            for (int variant = 0; variant < 3; variant++) {
                uint8_t version = versions[v];
                struct proto_packet p, d;
                struct buf w;
                memset(&p, 0, sizeof p);
                p.type = types[t];
                p.u.ack.packet_id = 65535;
                bool rel = types[t] == PROTO_PUBREL || types[t] == PROTO_PUBCOMP;
                if (variant >= 1)
                    p.u.ack.reason = rel ? 0x92 : 0x10;
                if (variant == 2) {
                    p.u.ack.props.reason_string = proto_cstr("why");
                    p.u.ack.props.user_props = user_props();
                }
                round_trip(&p, version, &w, &d);
                cr_assert_eq(d.u.ack.packet_id, 65535);
                cr_assert_eq(d.u.ack.reason, version == PROTO_V5 ? p.u.ack.reason : 0);
                struct proto_props ep = expect_props(&p.u.ack.props, version);
                assert_props_eq(&d.u.ack.props, &ep);
                size_t want_len = version < PROTO_V5 ? 4 : variant == 0 ? 4 : variant == 1 ? 5 : 0;
                if (want_len)
                    cr_assert_eq(w.len, want_len, "%s v%u variant %d: %zu bytes",
                                 proto_type_name(types[t]), version, variant, w.len);
                free(w.data);
            }
        }
    }
}

Test(encode, subscribe_round_trip)
{
    for (size_t v = 0; v < sizeof versions; v++) {
        uint8_t version = versions[v];
        struct proto_sub_entry entries[3] = {
            {proto_cstr("a/+/c"), 0, false, false, 0},
            {proto_cstr("$share/g/#"), 1, false, true, 1},
            {proto_cstr("x"), 2, true, true, 2},
        };
        struct proto_packet p, d;
        struct buf w;
        memset(&p, 0, sizeof p);
        p.type = PROTO_SUBSCRIBE;
        p.u.subscribe.packet_id = 42;
        p.u.subscribe.count = 3;
        p.u.subscribe.entries = entries;
        p.u.subscribe.props.has = PROTO_HAS_SUB_ID;
        p.u.subscribe.props.sub_id_count = 1;
        p.u.subscribe.props.sub_ids[0] = 77;
        p.u.subscribe.props.user_props = user_props();
        round_trip(&p, version, &w, &d);
        const struct proto_subscribe *s = &d.u.subscribe;
        cr_assert_eq(s->packet_id, 42);
        cr_assert_eq(s->count, 3);
        for (int i = 0; i < 3; i++) {
            cr_assert(str_eq(s->entries[i].filter, entries[i].filter));
            cr_assert_eq(s->entries[i].qos, entries[i].qos);
            if (version == PROTO_V5) {
                cr_assert_eq(s->entries[i].no_local, entries[i].no_local);
                cr_assert_eq(s->entries[i].retain_as_published, entries[i].retain_as_published);
                cr_assert_eq(s->entries[i].retain_handling, entries[i].retain_handling);
            } else {
                cr_assert_not(s->entries[i].no_local);
                cr_assert_not(s->entries[i].retain_as_published);
                cr_assert_eq(s->entries[i].retain_handling, 0);
            }
        }
        struct proto_props ep = expect_props(&p.u.subscribe.props, version);
        assert_props_eq(&s->props, &ep);
        proto_packet_release(&d);
        free(w.data);
    }
}

Test(encode, unsubscribe_round_trip)
{
    for (size_t v = 0; v < sizeof versions; v++) {
        uint8_t version = versions[v];
        struct proto_str filters[2] = {proto_cstr("a/#"), proto_cstr("")};
        struct proto_packet p, d;
        struct buf w;
        memset(&p, 0, sizeof p);
        p.type = PROTO_UNSUBSCRIBE;
        p.u.unsubscribe.packet_id = 1;
        p.u.unsubscribe.count = 2;
        p.u.unsubscribe.filters = filters;
        p.u.unsubscribe.props.user_props = user_props();
        round_trip(&p, version, &w, &d);
        cr_assert_eq(d.u.unsubscribe.packet_id, 1);
        cr_assert_eq(d.u.unsubscribe.count, 2);
        cr_assert(str_eq(d.u.unsubscribe.filters[0], filters[0]));
        cr_assert(str_eq(d.u.unsubscribe.filters[1], filters[1]));
        struct proto_props ep = expect_props(&p.u.unsubscribe.props, version);
        assert_props_eq(&d.u.unsubscribe.props, &ep);
        proto_packet_release(&d);
        free(w.data);
    }
}

Test(encode, suback_round_trip)
{
    for (size_t v = 0; v < sizeof versions; v++) {
        uint8_t version = versions[v];
        uint8_t codes[] = {0x00, 0x01, 0x02, 0x80, 0x8F, 0xA2};
        struct proto_packet p, d;
        struct buf w;
        memset(&p, 0, sizeof p);
        p.type = PROTO_SUBACK;
        p.u.suback.packet_id = 9;
        p.u.suback.count = sizeof codes;
        p.u.suback.reasons = codes;
        p.u.suback.props.reason_string = proto_cstr("partly");
        round_trip(&p, version, &w, &d);
        cr_assert_eq(d.u.suback.packet_id, 9);
        cr_assert_eq(d.u.suback.count, sizeof codes);
        for (size_t i = 0; i < sizeof codes; i++) {
            uint8_t want = version < PROTO_V5 && codes[i] >= 0x80 ? 0x80 : codes[i];
            cr_assert_eq(d.u.suback.reasons[i], want);
        }
        struct proto_props ep = expect_props(&p.u.suback.props, version);
        assert_props_eq(&d.u.suback.props, &ep);
        proto_packet_release(&d);
        free(w.data);
    }
}

Test(encode, unsuback_round_trip)
{
    for (size_t v = 0; v < sizeof versions; v++) {
        uint8_t version = versions[v];
        uint8_t codes[] = {0x00, 0x11, 0x87};
        struct proto_packet p, d;
        struct buf w;
        memset(&p, 0, sizeof p);
        p.type = PROTO_UNSUBACK;
        p.u.suback.packet_id = 10;
        p.u.suback.count = sizeof codes;
        p.u.suback.reasons = codes;
        round_trip(&p, version, &w, &d);
        cr_assert_eq(d.u.suback.packet_id, 10);
        if (version < PROTO_V5) {
            cr_assert_eq(w.len, 4);
            cr_assert_eq(d.u.suback.count, 0);
        } else {
            cr_assert_eq(d.u.suback.count, sizeof codes);
            cr_assert_eq(memcmp(d.u.suback.reasons, codes, sizeof codes), 0);
        }
        proto_packet_release(&d);
        free(w.data);
    }
}

Test(encode, simple_round_trip)
{
    static const uint8_t types[] = {PROTO_PINGREQ, PROTO_PINGRESP, PROTO_DISCONNECT};
    for (size_t v = 0; v < sizeof versions; v++) {
        for (size_t t = 0; t < sizeof types; t++) {
            struct proto_packet p, d;
            struct buf w;
            memset(&p, 0, sizeof p);
            p.type = types[t];
            round_trip(&p, versions[v], &w, &d);
            cr_assert_eq(w.len, 2);
            cr_assert_eq(w.data[0], types[t] << 4);
            cr_assert_eq(w.data[1], 0);
            free(w.data);
        }
    }
}

Test(encode, disconnect_auth_round_trip)
{
    static const uint8_t types[] = {PROTO_DISCONNECT, PROTO_AUTH};
    for (size_t t = 0; t < sizeof types; t++) {
        for (int variant = 0; variant < 3; variant++) {
            struct proto_packet p, d;
            struct buf w;
            memset(&p, 0, sizeof p);
            p.type = types[t];
            if (variant >= 1)
                p.u.disconnect.reason = types[t] == PROTO_AUTH ? 0x18 : 0x8E;
            if (variant == 2) {
                p.u.disconnect.props.reason_string = proto_cstr("bye");
                if (types[t] == PROTO_AUTH) {
                    p.u.disconnect.props.auth_method = proto_cstr("SCRAM");
                    p.u.disconnect.props.auth_data = proto_cstr("xyz");
                } else {
                    p.u.disconnect.props.has = PROTO_HAS_SESSION_EXPIRY;
                    p.u.disconnect.props.session_expiry = 0;
                    p.u.disconnect.props.server_reference = proto_cstr("b:1883");
                }
            }
            round_trip(&p, PROTO_V5, &w, &d);
            cr_assert_eq(w.len, variant == 0 ? 2u : variant == 1 ? 3u : w.len);
            cr_assert_eq(d.u.disconnect.reason, p.u.disconnect.reason);
            assert_props_eq(&d.u.disconnect.props, &p.u.disconnect.props);
            free(w.data);
        }
    }
}

/* --- exact bytes ------------------------------------------------------------ */

static void assert_bytes(const struct buf *w, const uint8_t *want, size_t n)
{
    cr_assert_eq(w->len, n, "length %zu, want %zu", w->len, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(w->data[i], want[i], "byte %zu: %02X want %02X", i, w->data[i], want[i]);
}

#define ENCODES_TO(pkt, version, ...)                                                              \
    do {                                                                                           \
        static const uint8_t want_[] = {__VA_ARGS__};                                              \
        struct buf w_ = {0};                                                                \
        cr_assert_eq(proto_encode((pkt), (version), &w_), 0);                                      \
        assert_bytes(&w_, want_, sizeof want_);                                                    \
        free(w_.data);                                                                             \
    } while (0)

Test(encode, connack_v3_mapping)
{
    struct proto_packet p;
    memset(&p, 0, sizeof p);
    p.type = PROTO_CONNACK;
    p.u.connack.session_present = true;
    ENCODES_TO(&p, PROTO_V311, 0x20, 0x02, 0x01, 0x00);
    ENCODES_TO(&p, PROTO_V31, 0x20, 0x02, 0x00, 0x00); /* no session present in 3.1 */
    p.u.connack.session_present = false;
    static const uint8_t map[][2] = {
        {0x84, 1}, {0x85, 2}, {0x88, 3}, {0x89, 3}, {0x86, 4}, {0x87, 5},
        {0x8C, 5}, {0x80, 3}, {0x9F, 3}, {0x02, 2}, {0x05, 5},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        p.u.connack.reason = map[i][0];
        struct buf w = {0};
        cr_assert_eq(proto_encode(&p, PROTO_V311, &w), 0);
        cr_assert_eq(w.len, 4);
        cr_assert_eq(w.data[3], map[i][1], "0x%02X -> %u", map[i][0], w.data[3]);
        free(w.data);
    }
    p.u.connack.reason = 0x87;
    ENCODES_TO(&p, PROTO_V5, 0x20, 0x03, 0x00, 0x87, 0x00);
}

Test(encode, v3_drops_properties)
{
    struct proto_packet p;
    memset(&p, 0, sizeof p);
    p.type = PROTO_PUBLISH;
    p.u.publish.qos = 1;
    p.u.publish.packet_id = 2;
    p.u.publish.topic = proto_cstr("a");
    p.u.publish.payload = proto_cstr("x");
    p.u.publish.props.has = PROTO_HAS_MESSAGE_EXPIRY;
    p.u.publish.props.message_expiry = 5;
    p.u.publish.props.user_props = user_props();
    ENCODES_TO(&p, PROTO_V311, 0x32, 0x06, 0, 1, 'a', 0, 2, 'x');
    ENCODES_TO(&p, PROTO_V5, 0x32, 0x1C, 0, 1, 'a', 0, 2, 21, 0x02, 0, 0, 0, 5, 0x26, 0, 1, 'k',
               0, 1, 'v', 0x26, 0, 4, 'n', 'a', 'm', 'e', 0, 0, 'x');
}

Test(encode, short_forms)
{
    struct proto_packet p;
    memset(&p, 0, sizeof p);
    p.type = PROTO_PUBREL;
    p.u.ack.packet_id = 0x0102;
    ENCODES_TO(&p, PROTO_V5, 0x62, 0x02, 0x01, 0x02);
    ENCODES_TO(&p, PROTO_V311, 0x62, 0x02, 0x01, 0x02);
    p.u.ack.reason = 0x92;
    ENCODES_TO(&p, PROTO_V5, 0x62, 0x03, 0x01, 0x02, 0x92);
    ENCODES_TO(&p, PROTO_V311, 0x62, 0x02, 0x01, 0x02);
    p.u.ack.reason = 0;
    p.u.ack.props.reason_string = proto_cstr("");
    ENCODES_TO(&p, PROTO_V5, 0x62, 0x07, 0x01, 0x02, 0x00, 0x03, 0x1F, 0, 0);

    memset(&p, 0, sizeof p);
    p.type = PROTO_DISCONNECT;
    ENCODES_TO(&p, PROTO_V5, 0xE0, 0x00);
    p.u.disconnect.reason = 0x8E;
    ENCODES_TO(&p, PROTO_V5, 0xE0, 0x01, 0x8E);
    ENCODES_TO(&p, PROTO_V311, 0xE0, 0x00);

    memset(&p, 0, sizeof p);
    p.type = PROTO_SUBSCRIBE;
    struct proto_sub_entry e = {proto_cstr("a"), 1, true, true, 2};
    p.u.subscribe.packet_id = 1;
    p.u.subscribe.count = 1;
    p.u.subscribe.entries = &e;
    ENCODES_TO(&p, PROTO_V311, 0x82, 0x06, 0, 1, 0, 1, 'a', 0x01);
    ENCODES_TO(&p, PROTO_V5, 0x82, 0x07, 0, 1, 0, 0, 1, 'a', 0x2D);
}

Test(encode, connect_bytes)
{
    struct proto_packet p;
    memset(&p, 0, sizeof p);
    p.type = PROTO_CONNECT;
    p.u.connect.clean_start = true;
    p.u.connect.keep_alive = 60;
    p.u.connect.client_id = proto_cstr("a");
    ENCODES_TO(&p, PROTO_V31, 0x10, 0x0F, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0x02, 0, 60, 0,
               1, 'a');
    ENCODES_TO(&p, PROTO_V311, 0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 1, 'a');
    ENCODES_TO(&p, PROTO_V5, 0x10, 0x0E, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0, 0, 1, 'a');
    /* version 0: the connect's own level */
    p.u.connect.version = PROTO_V311;
    ENCODES_TO(&p, 0, 0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 1, 'a');
}

Test(encode, simple)
{
    struct buf w = {0};
    cr_assert_eq(proto_encode_simple(PROTO_PINGREQ, &w), 0);
    cr_assert_eq(proto_encode_simple(PROTO_PINGRESP, &w), 0);
    cr_assert_eq(proto_encode_simple(PROTO_DISCONNECT, &w), 0);
    static const uint8_t want[] = {0xC0, 0, 0xD0, 0, 0xE0, 0};
    assert_bytes(&w, want, sizeof want);
    cr_assert_eq(proto_encode_simple(0, &w), PROTO_EPROTOCOL);
    cr_assert_eq(proto_encode_simple(16, &w), PROTO_EPROTOCOL);
    cr_assert_eq(w.len, sizeof want);
    free(w.data);
}

/* --- failures leave the buffer as it was ------------------------------------- */

Test(encode, too_large_leaves_buffer)
{
    struct buf w = {0};
    cr_assert_eq(proto_encode_simple(PROTO_PINGREQ, &w), 0);
    uint8_t *data = w.data;
    size_t cap = w.cap;

    struct proto_packet p;
    memset(&p, 0, sizeof p);
    p.type = PROTO_PUBLISH;
    p.u.publish.topic = proto_cstr("t");
    /* never read: the size is refused first */
    p.u.publish.payload.p = (const uint8_t *)"";
    p.u.publish.payload.len = PROTO_MAX_REMAINING_LENGTH - 2;
    cr_assert_eq(proto_encode(&p, PROTO_V311, &w), PROTO_ETOOLARGE);
    cr_assert_eq(proto_publish_encode_header(&p.u.publish, PROTO_V311, &w), PROTO_ETOOLARGE);
    cr_assert_eq(proto_publish_size(&p.u.publish, PROTO_V311), SIZE_MAX);
    p.u.publish.payload.len = PROTO_MAX_REMAINING_LENGTH - 3; /* exactly the maximum */
    cr_assert_eq(proto_publish_size(&p.u.publish, PROTO_V311), PROTO_MAX_REMAINING_LENGTH + 5);
    struct buf h = {0};
    cr_assert_eq(proto_publish_encode_header(&p.u.publish, PROTO_V311, &h), 0);
    static const uint8_t hdr[] = {0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0, 1, 't'};
    assert_bytes(&h, hdr, sizeof hdr);
    free(h.data);

    /* a string over 65535 bytes cannot be encoded */
    static uint8_t big[65536];
    p.u.publish.payload.len = 0;
    p.u.publish.topic.p = big;
    p.u.publish.topic.len = sizeof big;
    cr_assert_eq(proto_encode(&p, PROTO_V311, &w), PROTO_ETOOLARGE);
    p.u.publish.topic.len = sizeof big - 1;
    memset(big, 'a', sizeof big);
    struct buf ok = {0};
    cr_assert_eq(proto_encode(&p, PROTO_V311, &ok), 0);
    free(ok.data);

    /* bad raw user properties */
    p.u.publish.topic = proto_cstr("t");
    static const uint8_t bad_user[] = {0x26, 0, 5, 'k'};
    p.u.publish.props.user_props.p = bad_user;
    p.u.publish.props.user_props.len = sizeof bad_user;
    cr_assert_eq(proto_encode(&p, PROTO_V5, &w), PROTO_EMALFORMED);
    /* a sub id out of range */
    p.u.publish.props.user_props.len = 0;
    p.u.publish.props.sub_id_count = 1;
    p.u.publish.props.sub_ids[0] = PROTO_MAX_SUB_ID + 1;
    cr_assert_eq(proto_encode(&p, PROTO_V5, &w), PROTO_ETOOLARGE);
    /* QoS 3 */
    p.u.publish.props.sub_id_count = 0;
    p.u.publish.qos = 3;
    cr_assert_eq(proto_encode(&p, PROTO_V5, &w), PROTO_EPROTOCOL);
    /* bad version; AUTH before v5 */
    p.u.publish.qos = 0;
    cr_assert_eq(proto_encode(&p, 6, &w), PROTO_EVERSION);
    p.type = PROTO_AUTH;
    cr_assert_eq(proto_encode(&p, PROTO_V311, &w), PROTO_EPROTOCOL);

    cr_assert_eq(w.len, 2);
    cr_assert_eq(w.data, data);
    cr_assert_eq(w.cap, cap);
    cr_assert_eq(w.data[0], 0xC0);
    free(w.data);
}

Test(encode, enomem_leaves_buffer)
{
    /* A buffer that claims to be enormous: growing it must fail before any write,
     * so its (fake) data pointer is never touched. */
    struct buf w;
    w.data = NULL;
    w.len = SIZE_MAX / 2;
    w.cap = SIZE_MAX / 2;
    cr_assert_eq(proto_encode_simple(PROTO_PINGREQ, &w), PROTO_ENOMEM);
    cr_assert_eq(w.len, SIZE_MAX / 2);
    cr_assert_eq(w.cap, SIZE_MAX / 2);
    cr_assert_null(w.data);
}
