/* common/list.h: the intrusive doubly linked list. */
#include <criterion/criterion.h>

#include "list.h"

struct item {
    int v;
    struct list link;
};

static int values(struct list *head, int *out, int max)
{
    int n = 0;
    list_foreach(it, head) {
        cr_assert_lt(n, max);
        out[n++] = list_entry(it, struct item, link)->v;
    }
    return n;
}

Test(list, push_pop_and_order)
{
    struct list head;
    list_init(&head);
    cr_assert(list_empty(&head));
    cr_assert_null(list_first(&head));
    cr_assert_null(list_last(&head));
    cr_assert_null(list_pop_front(&head));
    struct item it[4] = {{.v = 0}, {.v = 1}, {.v = 2}, {.v = 3}};
    list_push_back(&head, &it[1].link);
    list_push_back(&head, &it[2].link);
    list_push_front(&head, &it[0].link);
    list_push_back(&head, &it[3].link);
    int got[8];
    cr_assert_eq(values(&head, got, 8), 4);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(got[i], i);
    cr_assert_eq(list_entry(list_first(&head), struct item, link), &it[0]);
    cr_assert_eq(list_entry(list_last(&head), struct item, link), &it[3]);
    cr_assert_eq(list_pop_front(&head), &it[0].link);
    cr_assert_not(list_linked(&it[0].link));
    cr_assert_eq(values(&head, got, 8), 3);
    cr_assert_eq(got[0], 1);
}

Test(list, remove_is_safe_twice_and_during_iteration)
{
    struct list head;
    list_init(&head);
    struct item it[6];
    for (int i = 0; i < 6; i++) {
        it[i].v = i;
        list_init(&it[i].link);
        cr_assert_not(list_linked(&it[i].link));
        list_push_back(&head, &it[i].link);
        cr_assert(list_linked(&it[i].link));
    }
    /* remove the even ones while iterating */
    list_foreach_safe(l, &head) {
        struct item *x = list_entry(l, struct item, link);
        if (x->v % 2 == 0)
            list_remove(l);
    }
    int got[8];
    cr_assert_eq(values(&head, got, 8), 3);
    cr_assert_eq(got[0], 1);
    cr_assert_eq(got[1], 3);
    cr_assert_eq(got[2], 5);
    list_remove(&it[0].link); /* already removed: no effect */
    list_remove(&it[3].link);
    list_remove(&it[3].link);
    cr_assert_eq(values(&head, got, 8), 2);
    list_remove(&it[1].link);
    list_remove(&it[5].link);
    cr_assert(list_empty(&head));
}

Test(list, splice_moves_everything)
{
    struct list a, b;
    list_init(&a);
    list_init(&b);
    struct item it[5];
    for (int i = 0; i < 5; i++) {
        it[i].v = i;
        list_push_back(i < 2 ? &a : &b, &it[i].link);
    }
    list_splice_back(&a, &b);
    cr_assert(list_empty(&b));
    int got[8];
    cr_assert_eq(values(&a, got, 8), 5);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(got[i], i);
    list_splice_back(&a, &b); /* empty: nothing changes */
    cr_assert_eq(values(&a, got, 8), 5);
    list_splice_back(&b, &a);
    cr_assert(list_empty(&a));
    cr_assert_eq(values(&b, got, 8), 5);
    cr_assert_eq(list_entry(list_last(&b), struct item, link), &it[4]);
}
