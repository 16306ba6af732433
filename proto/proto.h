/* proto: the MQTT 3.1 / 3.1.1 / 5.0 codec. Pure functions: bytes in, structs out
 * (and back), no I/O, no libuv, no logging, so tests and fuzzers call them directly.
 *
 * Ownership: a decoded packet holds *views* (struct proto_str) into the buffer that
 * was decoded; they stay valid only while that buffer does. The only memory a
 * decoder allocates is the entry array of SUBSCRIBE / UNSUBSCRIBE / SUBACK /
 * UNSUBACK, released by proto_packet_release(). Encoders borrow everything they
 * are given and append to a struct buf the caller owns.
 *
 * Errors: functions return 0 or a negative PROTO_E* code. MQTT reason codes are a
 * separate type (enum proto_reason); proto_error_reason() maps an error to the
 * reason code a v5 DISCONNECT (or CONNACK) should carry. */
#ifndef STARLING_PROTO_H
#define STARLING_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h" /* common/: struct buf, the growable output buffer of every encoder */

/* Protocol levels as carried in CONNECT. */
enum proto_version {
    PROTO_V31 = 3,  /* MQIsdp */
    PROTO_V311 = 4,
    PROTO_V5 = 5,
};

enum proto_type {
    PROTO_CONNECT = 1,
    PROTO_CONNACK = 2,
    PROTO_PUBLISH = 3,
    PROTO_PUBACK = 4,
    PROTO_PUBREC = 5,
    PROTO_PUBREL = 6,
    PROTO_PUBCOMP = 7,
    PROTO_SUBSCRIBE = 8,
    PROTO_SUBACK = 9,
    PROTO_UNSUBSCRIBE = 10,
    PROTO_UNSUBACK = 11,
    PROTO_PINGREQ = 12,
    PROTO_PINGRESP = 13,
    PROTO_DISCONNECT = 14,
    PROTO_AUTH = 15,
};

/* Internal error codes (negative). Never sent on the wire as such. */
enum proto_error {
    PROTO_EINCOMPLETE = -1000, /* need more bytes (framing only) */
    PROTO_EMALFORMED = -1001,  /* -> 0x81 */
    PROTO_EPROTOCOL = -1002,   /* -> 0x82 */
    PROTO_ETOOLARGE = -1003,   /* -> 0x95 */
    PROTO_EVERSION = -1004,    /* CONNECT with unknown level/name -> CONNACK 0x84 / 0x01 */
    PROTO_ETOPIC = -1005,      /* invalid topic name / filter (-> 0x90; 0x8F per SUBACK entry) */
    PROTO_EUTF8 = -1006,       /* invalid UTF-8 string -> 0x81 */
    PROTO_ENOMEM = -1007,
    PROTO_ECLIENTID = -1008,   /* unusable client identifier -> CONNACK 0x85 / 0x02 */
};

/* MQTT 5 reason codes (v3 CONNACK return codes are mapped by the encoder). */
enum proto_reason {
    PROTO_RC_SUCCESS = 0x00, /* also: normal disconnection, granted QoS 0 */
    PROTO_RC_GRANTED_QOS1 = 0x01,
    PROTO_RC_GRANTED_QOS2 = 0x02,
    PROTO_RC_DISCONNECT_WITH_WILL = 0x04,
    PROTO_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    PROTO_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    PROTO_RC_CONTINUE_AUTH = 0x18,
    PROTO_RC_REAUTHENTICATE = 0x19,
    PROTO_RC_UNSPECIFIED = 0x80,
    PROTO_RC_MALFORMED = 0x81,
    PROTO_RC_PROTOCOL_ERROR = 0x82,
    PROTO_RC_IMPL_SPECIFIC = 0x83,
    PROTO_RC_UNSUPPORTED_VERSION = 0x84,
    PROTO_RC_CLIENTID_INVALID = 0x85,
    PROTO_RC_BAD_USERNAME_PASSWORD = 0x86,
    PROTO_RC_NOT_AUTHORIZED = 0x87,
    PROTO_RC_SERVER_UNAVAILABLE = 0x88,
    PROTO_RC_SERVER_BUSY = 0x89,
    PROTO_RC_BANNED = 0x8A,
    PROTO_RC_SERVER_SHUTTING_DOWN = 0x8B,
    PROTO_RC_BAD_AUTH_METHOD = 0x8C,
    PROTO_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    PROTO_RC_SESSION_TAKEN_OVER = 0x8E,
    PROTO_RC_TOPIC_FILTER_INVALID = 0x8F,
    PROTO_RC_TOPIC_NAME_INVALID = 0x90,
    PROTO_RC_PACKET_ID_IN_USE = 0x91,
    PROTO_RC_PACKET_ID_NOT_FOUND = 0x92,
    PROTO_RC_RECEIVE_MAX_EXCEEDED = 0x93,
    PROTO_RC_TOPIC_ALIAS_INVALID = 0x94,
    PROTO_RC_PACKET_TOO_LARGE = 0x95,
    PROTO_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    PROTO_RC_QUOTA_EXCEEDED = 0x97,
    PROTO_RC_ADMIN_ACTION = 0x98,
    PROTO_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    PROTO_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    PROTO_RC_QOS_NOT_SUPPORTED = 0x9B,
    PROTO_RC_USE_ANOTHER_SERVER = 0x9C,
    PROTO_RC_SERVER_MOVED = 0x9D,
    PROTO_RC_SHARED_SUB_NOT_SUPPORTED = 0x9E,
    PROTO_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    PROTO_RC_MAX_CONNECT_TIME = 0xA0,
    PROTO_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
    PROTO_RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xA2,
};

/* v3.1 / 3.1.1 CONNACK return codes. */
enum proto_v3_connack {
    PROTO_V3_ACCEPTED = 0,
    PROTO_V3_BAD_VERSION = 1,
    PROTO_V3_ID_REJECTED = 2,
    PROTO_V3_SERVER_UNAVAILABLE = 3,
    PROTO_V3_BAD_USERNAME_PASSWORD = 4,
    PROTO_V3_NOT_AUTHORIZED = 5,
};

/* Limits of the protocol itself. */
#define PROTO_MAX_REMAINING_LENGTH 268435455u /* 4-byte varint */
#define PROTO_MAX_VARINT 268435455u
#define PROTO_MAX_PACKET_ID 65535u
#define PROTO_MAX_SUB_ID 268435455u

/* A view of bytes inside a buffer someone else owns. Not NUL-terminated. */
struct proto_str {
    const uint8_t *p;
    uint32_t len;
};

/* Property identifiers (MQTT 5, section 2.2.2.2). */
enum proto_prop_id {
    PROTO_PROP_PAYLOAD_FORMAT = 0x01,
    PROTO_PROP_MESSAGE_EXPIRY = 0x02,
    PROTO_PROP_CONTENT_TYPE = 0x03,
    PROTO_PROP_RESPONSE_TOPIC = 0x08,
    PROTO_PROP_CORRELATION_DATA = 0x09,
    PROTO_PROP_SUB_ID = 0x0B,
    PROTO_PROP_SESSION_EXPIRY = 0x11,
    PROTO_PROP_ASSIGNED_CLIENT_ID = 0x12,
    PROTO_PROP_SERVER_KEEP_ALIVE = 0x13,
    PROTO_PROP_AUTH_METHOD = 0x15,
    PROTO_PROP_AUTH_DATA = 0x16,
    PROTO_PROP_REQUEST_PROBLEM_INFO = 0x17,
    PROTO_PROP_WILL_DELAY = 0x18,
    PROTO_PROP_REQUEST_RESPONSE_INFO = 0x19,
    PROTO_PROP_RESPONSE_INFO = 0x1A,
    PROTO_PROP_SERVER_REFERENCE = 0x1C,
    PROTO_PROP_REASON_STRING = 0x1F,
    PROTO_PROP_RECEIVE_MAXIMUM = 0x21,
    PROTO_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
    PROTO_PROP_TOPIC_ALIAS = 0x23,
    PROTO_PROP_MAXIMUM_QOS = 0x24,
    PROTO_PROP_RETAIN_AVAILABLE = 0x25,
    PROTO_PROP_USER_PROPERTY = 0x26,
    PROTO_PROP_MAXIMUM_PACKET_SIZE = 0x27,
    PROTO_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
    PROTO_PROP_SUB_ID_AVAILABLE = 0x29,
    PROTO_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

/* Presence bits of struct proto_props, one per property that is not a string
 * (strings are present when .p != NULL) and not the user properties. */
#define PROTO_HAS_PAYLOAD_FORMAT (1u << 0)
#define PROTO_HAS_MESSAGE_EXPIRY (1u << 1)
#define PROTO_HAS_SUB_ID (1u << 2)
#define PROTO_HAS_SESSION_EXPIRY (1u << 3)
#define PROTO_HAS_SERVER_KEEP_ALIVE (1u << 4)
#define PROTO_HAS_REQUEST_PROBLEM_INFO (1u << 5)
#define PROTO_HAS_WILL_DELAY (1u << 6)
#define PROTO_HAS_REQUEST_RESPONSE_INFO (1u << 7)
#define PROTO_HAS_RECEIVE_MAXIMUM (1u << 8)
#define PROTO_HAS_TOPIC_ALIAS_MAXIMUM (1u << 9)
#define PROTO_HAS_TOPIC_ALIAS (1u << 10)
#define PROTO_HAS_MAXIMUM_QOS (1u << 11)
#define PROTO_HAS_RETAIN_AVAILABLE (1u << 12)
#define PROTO_HAS_MAXIMUM_PACKET_SIZE (1u << 13)
#define PROTO_HAS_WILDCARD_SUB_AVAILABLE (1u << 14)
#define PROTO_HAS_SUB_ID_AVAILABLE (1u << 15)
#define PROTO_HAS_SHARED_SUB_AVAILABLE (1u << 16)

/* Most subscription identifiers one decoded PUBLISH may carry (a server sends one
 * per matching subscription); more is accepted but only the first ones are kept. */
#define PROTO_MAX_DECODED_SUB_IDS 8

/* All MQTT 5 properties of one packet (or of a will). Which ones a packet type may
 * carry is checked by the decoder (a property not allowed in that packet, or a
 * single-valued property given twice, is PROTO_EPROTOCOL), as are value ranges
 * (0 for receive maximum, maximum packet size or a subscription id; more than 1
 * for the byte-valued flags). A topic alias of 0 is decoded: the receiver answers
 * it with 0x94. The encoder writes every property that
 * is present without checking placement: set only what the packet type allows.
 * Zeroed (has == 0, all views NULL) for v3. */
struct proto_props {
    uint32_t has; /* PROTO_HAS_* bits */
    uint8_t payload_format;
    uint32_t message_expiry;
    struct proto_str content_type;
    struct proto_str response_topic;
    struct proto_str correlation_data;
    /* Subscription identifiers: SUBSCRIBE carries at most one; a PUBLISH from a
     * server may carry several. On encode, sub_ids[0..sub_id_count) are written. */
    uint32_t sub_id_count;
    uint32_t sub_ids[PROTO_MAX_DECODED_SUB_IDS];
    const uint32_t *sub_ids_ext; /* encode only: if non-NULL, used instead of sub_ids */
    uint32_t session_expiry;
    struct proto_str assigned_client_id;
    uint16_t server_keep_alive;
    struct proto_str auth_method;
    struct proto_str auth_data;
    uint8_t request_problem_info;
    uint32_t will_delay;
    uint8_t request_response_info;
    struct proto_str response_info;
    struct proto_str server_reference;
    struct proto_str reason_string;
    uint16_t receive_maximum;
    uint16_t topic_alias_maximum;
    uint16_t topic_alias;
    uint8_t maximum_qos;
    uint8_t retain_available;
    uint32_t maximum_packet_size;
    uint8_t wildcard_sub_available;
    uint8_t sub_id_available;
    uint8_t shared_sub_available;
    /* User properties, kept as their raw encoding (0x26, name, value, ...) so that
     * they pass through unchanged and in order. Decode: a view of the property
     * block from the first User Property to the end of the last one; if a client
     * interleaved other properties between them, those stay inside the view.
     * proto_user_prop_next() and the encoder skip everything that is not 0x26, so
     * the view can be handed on as it is; the encoder writes only the User
     * Properties from it (a plain copy when nothing is interleaved). To build one by
     * hand, concatenate 0x26, u16 length, name, u16 length, value. */
    struct proto_str user_props;
};

struct proto_connect {
    uint8_t version; /* enum proto_version */
    bool clean_start;
    uint16_t keep_alive;
    struct proto_str client_id; /* may be empty (len 0) */
    bool will;
    uint8_t will_qos;
    bool will_retain;
    struct proto_props will_props;
    struct proto_str will_topic;
    struct proto_str will_payload;
    bool has_username;
    struct proto_str username;
    bool has_password;
    struct proto_str password;
    struct proto_props props;
};

struct proto_connack {
    bool session_present;
    /* Encode: a v5 reason code; for v3 a code >= 0x80 is mapped with
     * proto_v3_connack_code(), a smaller one is written as it is. Decode: the
     * byte on the wire. */
    uint8_t reason;
    struct proto_props props;
};

struct proto_publish {
    uint8_t qos;
    bool dup;
    bool retain;
    struct proto_str topic; /* may be empty in v5 when a topic alias is used */
    uint16_t packet_id;     /* only for qos > 0 */
    struct proto_props props;
    struct proto_str payload;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP. A v5 ack with reason 0 and no properties is
 * encoded in its short form (2 bytes). */
struct proto_ack {
    uint16_t packet_id;
    uint8_t reason;
    struct proto_props props;
};

struct proto_sub_entry {
    struct proto_str filter;
    uint8_t qos;
    bool no_local;
    bool retain_as_published;
    uint8_t retain_handling; /* 0, 1 or 2 */
};

struct proto_subscribe {
    uint16_t packet_id;
    struct proto_props props;
    uint32_t count;
    struct proto_sub_entry *entries; /* decode: allocated, see proto_packet_release */
};

struct proto_unsubscribe {
    uint16_t packet_id;
    struct proto_props props;
    uint32_t count;
    struct proto_str *filters; /* decode: allocated */
};

/* SUBACK and UNSUBACK (v3.1.1 UNSUBACK has no reason codes: count is 0). */
struct proto_suback {
    uint16_t packet_id;
    struct proto_props props;
    uint32_t count;
    uint8_t *reasons; /* decode: allocated; encode: borrowed */
};

/* DISCONNECT and AUTH. */
struct proto_disconnect {
    uint8_t reason;
    struct proto_props props;
};

struct proto_packet {
    uint8_t type;  /* enum proto_type */
    uint8_t flags; /* low nibble of the fixed header */
    union {
        struct proto_connect connect;
        struct proto_connack connack;
        struct proto_publish publish;
        struct proto_ack ack;
        struct proto_subscribe subscribe;
        struct proto_unsubscribe unsubscribe;
        struct proto_suback suback; /* SUBACK, UNSUBACK */
        struct proto_disconnect disconnect; /* DISCONNECT, AUTH */
    } u;
};

/* --- framing -------------------------------------------------------------- */

/* Looks at the start of a stream buffer. Returns 0 when buf holds at least one
 * whole packet and sets *packet_len (fixed header + remaining length);
 * PROTO_EINCOMPLETE when more bytes are needed (after checking what is there);
 * PROTO_EMALFORMED for a varint longer than 4 bytes; PROTO_ETOOLARGE when the
 * announced packet exceeds max_packet (0 = protocol maximum). The size check is
 * made as soon as the length is known, before the body arrives. */
int proto_frame(const uint8_t *buf, size_t len, uint32_t max_packet, size_t *packet_len);

/* --- decoding ------------------------------------------------------------- */

/* Decodes exactly one whole packet (buf, len as framed by proto_frame).
 * version is the connection's protocol level (0 before CONNECT: then only
 * CONNECT decodes; the CONNECT's own level is used for it). Validates fixed-header
 * flags, lengths, UTF-8 (no U+0000, no surrogates, well-formed), topic names (no
 * wildcards; PROTO_ETOPIC), property placement, duplicates and ranges, reserved
 * bits, QoS 3, packet id 0 where one is required, empty SUBSCRIBE / UNSUBSCRIBE,
 * reason codes of acks. On failure *out is left unspecified but owns no memory,
 * except: for PROTO_EVERSION and PROTO_ECLIENTID, out->type is PROTO_CONNECT and
 * out->u.connect.version holds the level byte the client sent.
 * PROTO_ECLIENTID: an empty client id in v3.1, or in v3.1.1 without clean session.
 * On success, release with proto_packet_release.
 *
 * Left to the caller (the decoder cannot know the session state or policy):
 * - topic filters of SUBSCRIBE / UNSUBSCRIBE are only checked to be UTF-8; call
 *   proto_topic_filter_check() per entry (v5 answers SUBACK 0x8F for that entry);
 *   No Local on a $share filter is a protocol error to be checked there too;
 * - a v5 PUBLISH may have an empty topic (topic alias): check the alias exists,
 *   is not 0 and is within the Topic Alias Maximum (else DISCONNECT 0x94);
 * - a subscription identifier in a PUBLISH sent by a client is a protocol error;
 * - payload format 1 with a payload that is not UTF-8 (may be checked with
 *   proto_utf8_check());
 * - a second CONNECT, session expiry in DISCONNECT after 0 in CONNECT, client id
 *   length and characters, AUTH flow. */
int proto_decode(const uint8_t *buf, size_t len, uint8_t version, struct proto_packet *out);

/* Frees what the decoder allocated (entry arrays); the views need no release. */
void proto_packet_release(struct proto_packet *p);

/* Walks the raw user properties: *pos starts at 0. Returns 1 and fills name/value
 * while there is one more, 0 at the end, PROTO_EMALFORMED on bad bytes. */
int proto_user_prop_next(struct proto_str raw, size_t *pos, struct proto_str *name,
                         struct proto_str *value);

/* --- encoding ------------------------------------------------------------- */

/* Appends the encoding of p for the given protocol level (properties dropped for
 * v3; v3 CONNACK reason is taken as the v3 return code; for CONNECT, version 0
 * means p->u.connect.version). Returns 0, PROTO_ENOMEM, or PROTO_ETOOLARGE if the
 * remaining length would exceed the protocol maximum (also: a string over 65535
 * bytes, a subscription id out of range); PROTO_EVERSION for an unknown level,
 * PROTO_EPROTOCOL for QoS 3 or AUTH before v5, PROTO_EMALFORMED for raw user
 * properties that cannot be walked. On any failure out is unchanged. */
int proto_encode(const struct proto_packet *p, uint8_t version, struct buf *out);

/* Appends a PUBLISH without its payload: fixed header (whose remaining length
 * counts payload_len), topic, packet id and properties. The caller sends the
 * payload after it; lets a fan-out share one payload buffer. */
int proto_publish_encode_header(const struct proto_publish *pub, uint8_t version,
                                struct buf *out);

/* Size in bytes of the whole encoded PUBLISH (header + payload), for checking a
 * receiver's Maximum Packet Size before encoding; SIZE_MAX if it cannot be
 * encoded at all. */
size_t proto_publish_size(const struct proto_publish *pub, uint8_t version);

/* Appends the property block body (no length prefix) of props: every present
 * property, sub ids, then the raw user properties. */
int proto_props_encode(const struct proto_props *props, struct buf *out);

/* Decodes a property block body (no length prefix) as found in a packet of the
 * given type (PROTO_PUBLISH for message properties; 0 for a will). Views point
 * into buf. */
int proto_props_decode(const uint8_t *buf, size_t len, uint8_t type, struct proto_props *out);

/* Appends a 2-byte fixed-header packet (PINGREQ, PINGRESP, v3 DISCONNECT). */
int proto_encode_simple(uint8_t type, struct buf *out);

/* --- validation helpers (used by the decoder and the broker) --------------- */

/* 0 if s is a valid MQTT UTF-8 string (well-formed, no U+0000, no surrogates,
 * no over-long forms), PROTO_EUTF8 otherwise. */
int proto_utf8_check(const uint8_t *s, size_t len);

/* 0 if a valid topic name for PUBLISH (non-empty, no '+' or '#'), else
 * PROTO_ETOPIC. Neither this nor the filter check looks at UTF-8. */
int proto_topic_name_check(const uint8_t *s, size_t len);

/* 0 if a valid topic filter ('#' only last and alone in its level, '+' alone in
 * its level, non-empty; "$share/{group}/{filter}" needs a non-empty group without
 * wildcards and a non-empty filter). */
int proto_topic_filter_check(const uint8_t *s, size_t len);

/* Splits "$share/group/filter". Returns 1 and fills group and filter if s is a
 * shared subscription, 0 if not. Assumes s passed proto_topic_filter_check. */
int proto_shared_split(struct proto_str s, struct proto_str *group, struct proto_str *filter);

/* The v5 reason code for an error returned by the decoder. */
uint8_t proto_error_reason(int err);

/* The v3 CONNACK return code closest to a v5 CONNACK reason code. */
uint8_t proto_v3_connack_code(uint8_t v5_reason);

/* Number of bytes the varint encoding of v takes (1..4), 0 if too large. */
int proto_varint_size(uint32_t v);

/* Convenience: makes a view of a NUL-terminated C string (borrowed). */
struct proto_str proto_cstr(const char *s);

/* Human-readable names, for logs and tools. */
const char *proto_type_name(uint8_t type);
const char *proto_error_name(int err);

#endif
