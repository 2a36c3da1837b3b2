/*
 * A tiny intrusive doubly linked list (backend-neutral; the cable and the
 * host must not depend on libspa). Not thread-safe: every list says which
 * thread or lock guards it.
 */
#ifndef AL_LIST_H
#define AL_LIST_H

#include <stddef.h>

struct al_list {
	struct al_list *next, *prev;
};

static inline void al_list_init(struct al_list *l)
{
	l->next = l->prev = l;
}

static inline int al_list_empty(const struct al_list *l)
{
	return l->next == l;
}

static inline void al_list_append(struct al_list *head, struct al_list *e)
{
	e->prev = head->prev;
	e->next = head;
	head->prev->next = e;
	head->prev = e;
}

/* removes e and leaves it self-linked, so a second remove is harmless */
static inline void al_list_remove(struct al_list *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->next = e->prev = e;
}

/* moves every element of src to the end of dst; src is left empty */
static inline void al_list_splice(struct al_list *dst, struct al_list *src)
{
	if (al_list_empty(src))
		return;
	src->next->prev = dst->prev;
	dst->prev->next = src->next;
	src->prev->next = dst;
	dst->prev = src->prev;
	al_list_init(src);
}

#define al_container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

#define al_list_for_each_safe(pos, tmp, head, type, member)                        \
	for (pos = al_container_of((head)->next, type, member),                     \
	    tmp = al_container_of(pos->member.next, type, member);                  \
	     &pos->member != (head);                                                \
	     pos = tmp, tmp = al_container_of(tmp->member.next, type, member))

#define al_list_for_each(pos, head, type, member)                                  \
	for (pos = al_container_of((head)->next, type, member); &pos->member != (head); \
	     pos = al_container_of(pos->member.next, type, member))

#endif
