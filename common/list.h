/* list: the one intrusive, circular, doubly linked list (as libuv's queue.h
 * and raft's src/queue.h): a struct list is embedded in each element and one
 * more serves as the head. Nothing allocates; an element may be on as many
 * lists as it embeds links.
 *
 *   struct list conns;                 // head: list_init(&conns)
 *   struct conn { struct list link; }; // element
 *   list_push_back(&conns, &c->link);
 *   list_foreach_safe(it, tmp, &conns) { struct conn *c = list_entry(it, struct conn, link); ... }
 *
 * A removed element's link points to itself (list_linked() is false), so
 * removing twice is harmless. A zeroed link is neither linked nor a valid
 * empty head: call list_init. */
#ifndef STARLING_COMMON_LIST_H
#define STARLING_COMMON_LIST_H

#include <stdbool.h>
#include <stddef.h>

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

struct list {
    struct list *next;
    struct list *prev;
};

#define list_entry(ptr, type, member) container_of(ptr, type, member)

static inline void list_init(struct list *l)
{
    l->next = l;
    l->prev = l;
}

static inline bool list_empty(const struct list *head)
{
    return head->next == head;
}

/* Whether an element's link is on a list (it was list_init'ed or removed otherwise). */
static inline bool list_linked(const struct list *l)
{
    return l->next != l && l->next != NULL;
}

static inline void list__insert(struct list *l, struct list *prev, struct list *next)
{
    l->prev = prev;
    l->next = next;
    prev->next = l;
    next->prev = l;
}

static inline void list_push_back(struct list *head, struct list *l)
{
    list__insert(l, head->prev, head);
}

static inline void list_push_front(struct list *head, struct list *l)
{
    list__insert(l, head, head->next);
}

/* Unlinks l (no-op when it is not linked) and leaves it pointing to itself. */
static inline void list_remove(struct list *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    list_init(l);
}

/* The first / last element's link, or NULL when the list is empty. */
static inline struct list *list_first(const struct list *head)
{
    return list_empty(head) ? NULL : head->next;
}

static inline struct list *list_last(const struct list *head)
{
    return list_empty(head) ? NULL : head->prev;
}

/* Removes and returns the first element's link, or NULL. */
static inline struct list *list_pop_front(struct list *head)
{
    struct list *l = list_first(head);
    if (l)
        list_remove(l);
    return l;
}

/* Moves every element of from to the end of to; from is left empty. */
static inline void list_splice_back(struct list *to, struct list *from)
{
    if (list_empty(from))
        return;
    struct list *first = from->next, *last = from->prev;
    first->prev = to->prev;
    to->prev->next = first;
    last->next = to;
    to->prev = last;
    list_init(from);
}

/* Iterates over the links of head; the body must not remove it (see _safe). */
#define list_foreach(it, head) for (struct list *it = (head)->next; it != (head); it = it->next)

/* Iterates over the links of head; the body may remove (or free) it. */
#define list_foreach_safe(it, head)                                                                \
    for (struct list *it = (head)->next, *it##_next = it->next; it != (head);                     \
         it = it##_next, it##_next = it->next)

#endif
