/* list: the host's one linked list, intrusive and doubly linked, as libuv's queue
 * (src/queue.h). A list is a circular chain through a sentinel list_node that holds no
 * element: an empty list points at itself, so insertion and removal never test for NULL
 * and removing an element needs neither the list nor a search. An element embeds a
 * list_node and list_entry() turns a node back into its element. Nothing here allocates. */
#ifndef OL_LIST_H
#define OL_LIST_H

#include <stddef.h>

typedef struct list_node {
    struct list_node *prev, *next;
} list_node;

/* The element of type `type` whose member `field` is the node `node`. */
#define list_entry(node, type, field) ((type *)((char *)(node)-offsetof(type, field)))

/* Every node of the list at head, from first to last. The loop body must not remove pos;
 * list_foreach_safe allows removing (and freeing) pos, through the spare cursor tmp. */
#define list_foreach(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)
#define list_foreach_safe(pos, tmp, head)                                                          \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);                               \
         (pos) = (tmp), (tmp) = (pos)->next)

/* An empty list, or a node that is in no list (list_remove leaves it so). */
static inline void list_init(list_node *node) {
    node->prev = node;
    node->next = node;
}

static inline int list_empty(const list_node *head) {
    return head->next == head;
}

/* The first node, or NULL when the list is empty. */
static inline list_node *list_first(const list_node *head) {
    return list_empty(head) ? NULL : head->next;
}

static inline void list_insert_head(list_node *head, list_node *node) {
    node->next = head->next;
    node->prev = head;
    head->next->prev = node;
    head->next = node;
}

static inline void list_insert_tail(list_node *head, list_node *node) {
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

/* Unlinks node from whatever list holds it; a second call is harmless. */
static inline void list_remove(list_node *node) {
    node->prev->next = node->next;
    node->next->prev = node->prev;
    list_init(node);
}

#endif
