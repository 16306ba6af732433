/* trie: topic-level tree used both for subscriptions (stored filters, matched
 * against a published topic name) and for retained messages (stored topic names,
 * matched against a subscription filter).
 *
 * Items are intrusive: the caller embeds a struct trie_item in its own object and
 * gets back to it with container_of. The trie never frees items; it frees its
 * own nodes when they become empty. Keys are copied. */
#ifndef STARLING_BROKER_TRIE_H
#define STARLING_BROKER_TRIE_H

#include <stddef.h>
#include <stdint.h>

struct trie_node;

struct trie_item {
    struct trie_node *node; /* set by trie_insert, NULL when not in a trie */
    uint32_t index;         /* position in the node's item array (private) */
};

struct trie {
    struct trie_node *root;
    size_t items;           /* number of items stored */
    size_t nodes;           /* number of nodes allocated (for metrics/tests) */
};

/* Called for each matching item; returning non-zero stops the walk. */
typedef int (*trie_match_cb)(struct trie_item *item, void *arg);

void trie_init(struct trie *t);

/* Frees all nodes. Items still stored are simply forgotten (their .node becomes
 * dangling: the caller frees its objects itself). */
void trie_free(struct trie *t);

/* Stores item under key (a filter or topic name, len bytes, not NUL-terminated,
 * levels separated by '/'; empty levels are real levels). Several items may share
 * one key. Returns 0 or -ENOMEM (then item->node stays NULL). */
int trie_insert(struct trie *t, const char *key, size_t len, struct trie_item *item);

/* Removes item (O(1) plus pruning of nodes left empty). No-op if item->node is NULL. */
void trie_remove(struct trie *t, struct trie_item *item);

/* Items stored under exactly this key; cb as for the match functions. */
int trie_exact(const struct trie *t, const char *key, size_t len, trie_match_cb cb, void *arg);

/* Subscription direction: calls cb for every item whose stored *filter* matches
 * the topic *name* (with '+' and '#' wildcards, "a/#" matching "a"). A topic
 * starting with '$' is not matched by a filter starting with '+' or '#'. */
int trie_match_topic(const struct trie *t, const char *topic, size_t len, trie_match_cb cb, void *arg);

/* Retained direction: calls cb for every item whose stored *topic name* matches
 * the given *filter* (same rules, including the '$' rule). */
int trie_match_filter(const struct trie *t, const char *filter, size_t len, trie_match_cb cb, void *arg);

/* The key of the node an item is stored under, rebuilt into buf (NUL-terminated,
 * truncated to buflen). Returns the full key length. */
size_t trie_item_key(const struct trie_item *item, char *buf, size_t buflen);

#endif
