/* Backend-neutral core/stream lifetimes and the graph mirror (see backend.h). */
#include <errno.h>
#include <stdlib.h>

#include "backend.h"

void al_cores_init(struct al_host *h)
{
	al_list_init(&h->cores);
}

void al_cores_close_all(struct al_host *h)
{
	struct al_core *c, *tc;
	al_list_for_each_safe(c, tc, &h->cores, struct al_core, link)
		al_core_close(c);
}

int al_core_open(struct al_core *c, struct al_host *h, const struct al_backend_ops *ops, const char *app_name)
{
	c->host = h;
	c->ops = ops;
	al_list_init(&c->streams);
	al_list_init(&c->nodes);
	al_list_init(&c->links);
	al_list_init(&c->clients);
	al_list_init(&c->link);
	int res = ops->open(c, app_name);
	if (res < 0) {
		c->closed = true;
		return res;
	}
	al_list_append(&h->cores, &c->link);
	return 0;
}

void al_core_close(struct al_core *c)
{
	if (c->closed)
		return;
	/* children first: every stream's node goes, its cable is let go */
	struct al_stream *s, *ts;
	al_list_for_each_safe(s, ts, &c->streams, struct al_stream, link)
		al_stream_destroy(s);
	c->closed = true;
	atomic_store(&c->connected, 0);
	c->ops->close(c);
	struct al_node_info *n, *tn;
	al_list_for_each_safe(n, tn, &c->nodes, struct al_node_info, link)
		al_mirror_free_node(n);
	struct al_client_info *ci, *tci;
	al_list_for_each_safe(ci, tci, &c->clients, struct al_client_info, link)
		al_mirror_free_client(ci);
	struct al_link_info *l, *tl;
	al_list_for_each_safe(l, tl, &c->links, struct al_link_info, link) {
		al_list_remove(&l->link);
		free(l);
	}
	al_list_remove(&c->link);
	al_target_remove(c->host, &c->target);
}

int al_stream_create(struct al_stream *s, struct al_core *c, struct al_cable *cable, const struct al_stream_params *p)
{
	if (c->closed)
		return -EBADF;
	if (cable->has_stream)
		return -EBUSY;
	if (cable->is_sink != p->is_sink)
		return -EINVAL;
	s->core = c;
	s->cable = cable;
	s->is_sink = p->is_sink;
	atomic_store(&s->node_id, AL_ID_NONE);
	al_list_init(&s->link);
	atomic_store(&cable->links, 0);
	atomic_store(&cable->active_links, 0);
	c->ops->lock(c);
	int res = c->ops->stream_new(c, s, p);
	if (res == 0)
		al_list_append(&c->streams, &s->link);
	c->ops->unlock(c);
	if (res < 0) {
		s->core = NULL;
		s->cable = NULL;
		return res;
	}
	cable->has_stream = true;
	al_cable_ref(cable);
	return 0;
}

void al_stream_destroy(struct al_stream *s)
{
	struct al_core *c = s->core;
	if (c == NULL)
		return;
	c->ops->stream_destroy(c, s); /* [rt] has left the cable when this returns */
	c->ops->lock(c);
	al_list_remove(&s->link);
	c->ops->unlock(c);
	s->core = NULL;
	al_target_remove(c->host, &s->target);
	if (s->cable) {
		s->cable->has_stream = false;
		atomic_store(&s->cable->links, 0);
		atomic_store(&s->cable->active_links, 0);
		al_cable_unref(s->cable);
		s->cable = NULL;
	}
}

void al_mirror_free_node(struct al_node_info *n)
{
	al_list_remove(&n->link);
	free(n->name);
	free(n->media_class);
	free(n->app_name);
	free(n->media_name);
	free(n);
}

void al_mirror_free_client(struct al_client_info *ci)
{
	al_list_remove(&ci->link);
	free(ci->app_name);
	free(ci);
}

/* [loop] the client node at the other end of a link is known not to run */
static bool peer_stopped(struct al_core *c, uint32_t node_id)
{
	struct al_node_info *n;
	al_list_for_each(n, &c->nodes, struct al_node_info, link) {
		if (n->id == node_id)
			return n->stopped;
	}
	return false;
}

void al_mirror_update_links(struct al_core *c)
{
	struct al_stream *s;
	al_list_for_each(s, &c->streams, struct al_stream, link) {
		if (s->cable == NULL)
			continue;
		uint32_t node_id = atomic_load(&s->node_id), count = 0, active = 0;
		struct al_link_info *l;
		if (node_id != AL_ID_NONE) {
			al_list_for_each(l, &c->links, struct al_link_info, link) {
				if ((s->is_sink ? l->in_node : l->out_node) != node_id)
					continue;
				count++;
				if (l->active && !peer_stopped(c, s->is_sink ? l->out_node : l->in_node))
					active++;
			}
		}
		uint32_t old = atomic_exchange(&s->cable->links, count);
		uint32_t old_active = atomic_exchange(&s->cable->active_links, active);
		if (old != count || old_active != active)
			al_host_push(c->host, AL_EV_LINKS, s->target.id, count, active, NULL);
	}
}
