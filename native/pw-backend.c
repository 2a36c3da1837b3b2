/*
 * The PipeWire backend: a pw_thread_loop ([loop]) with a context, the core
 * connection and a registry mirror; each stream is one pw_stream, an
 * Audio/Sink (clients play into the cable) or an Audio/Source (the cable
 * plays to recording clients), whose process callback ([rt],
 * PW_STREAM_FLAG_RT_PROCESS) only calls the cable's rt functions.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pipewire/pipewire.h>
#include <spa/param/audio/format-utils.h>
#include <spa/utils/result.h>

#include "backend.h"

struct pw_core_impl {
	struct al_core *c;
	struct pw_thread_loop *tl;
	struct pw_context *context;
	struct pw_core *core;
	struct spa_hook core_listener;
	struct pw_registry *registry;
	struct spa_hook registry_listener;
};

/* a bound Client global: its info event carries application.process.id */
struct pw_client_impl {
	struct pw_core_impl *pc;
	struct al_client_info *ci;
	struct pw_proxy *proxy;
	struct spa_hook listener;
};

/*
 * A bound link or client-stream node (the session rules' inputs): a link's
 * info gives its state (active = data flows; a corked PulseAudio stream's
 * links are "paused"), a client stream's info props its node.latency.
 */
struct pw_bound_impl {
	struct pw_core_impl *pc;
	void *info;                     /* the al_link_info or al_node_info */
	struct pw_proxy *proxy;
	struct spa_hook listener;
};

struct pw_stream_impl {
	struct al_stream *s;
	struct pw_core_impl *pc;
	struct pw_stream *stream;       /* [loop] */
	struct spa_hook listener;
	uint32_t stride;
};

static uint32_t spa_format_of(enum al_sample s)
{
	switch (s) {
	case AL_U8: return SPA_AUDIO_FORMAT_U8;
	case AL_S16LE: return SPA_AUDIO_FORMAT_S16_LE;
	case AL_S24LE: return SPA_AUDIO_FORMAT_S24_LE;
	case AL_S32LE: return SPA_AUDIO_FORMAT_S32_LE;
	case AL_F32LE: return SPA_AUDIO_FORMAT_F32_LE;
	}
	return SPA_AUDIO_FORMAT_UNKNOWN;
}

/* Default channel layouts for 1-8 channels (as PulseAudio/ALSA order them). */
static void set_positions(uint32_t *pos, uint32_t channels)
{
	static const uint32_t layouts[8][8] = {
		{ SPA_AUDIO_CHANNEL_MONO },
		{ SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR },
		{ SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR, SPA_AUDIO_CHANNEL_FC },
		{ SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR, SPA_AUDIO_CHANNEL_RL, SPA_AUDIO_CHANNEL_RR },
		{ SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR, SPA_AUDIO_CHANNEL_FC, SPA_AUDIO_CHANNEL_RL,
		  SPA_AUDIO_CHANNEL_RR },
		{ SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR, SPA_AUDIO_CHANNEL_FC, SPA_AUDIO_CHANNEL_LFE,
		  SPA_AUDIO_CHANNEL_RL, SPA_AUDIO_CHANNEL_RR },
		{ SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR, SPA_AUDIO_CHANNEL_FC, SPA_AUDIO_CHANNEL_LFE,
		  SPA_AUDIO_CHANNEL_RC, SPA_AUDIO_CHANNEL_SL, SPA_AUDIO_CHANNEL_SR },
		{ SPA_AUDIO_CHANNEL_FL, SPA_AUDIO_CHANNEL_FR, SPA_AUDIO_CHANNEL_FC, SPA_AUDIO_CHANNEL_LFE,
		  SPA_AUDIO_CHANNEL_RL, SPA_AUDIO_CHANNEL_RR, SPA_AUDIO_CHANNEL_SL, SPA_AUDIO_CHANNEL_SR },
	};
	memcpy(pos, layouts[channels - 1], channels * sizeof(uint32_t));
}

/* ------------------------------------------------------------------------ */
/* stream callbacks                                                          */

/* [rt] sink: every buffer the graph queued for us goes into the cable */
static void sink_process(struct pw_stream_impl *si)
{
	struct al_cable *cable = si->s->cable;
	struct pw_buffer *b;
	uint32_t frames = 0;
	bool dropped = false;

	/* drain the queue: a buffer left behind would be recycled unread */
	while ((b = pw_stream_dequeue_buffer(si->stream)) != NULL) {
		struct spa_data *d = &b->buffer->datas[0];
		if (d->data != NULL) {
			uint32_t off = SPA_MIN(d->chunk->offset, d->maxsize);
			uint32_t n = SPA_MIN(d->chunk->size, d->maxsize - off);
			n -= n % si->stride;
			if (al_cable_rt_push(cable, SPA_PTROFF(d->data, off, uint8_t), n, &dropped))
				frames += n / si->stride;
		}
		pw_stream_queue_buffer(si->stream, b);
	}
	al_cable_rt_push_done(cable, frames, dropped);
}

/* [rt] source: the cable fills the buffer (ring data, then silence) */
static void source_process(struct pw_stream_impl *si)
{
	struct pw_buffer *b = pw_stream_dequeue_buffer(si->stream);
	if (b == NULL)
		return;
	struct spa_data *d = &b->buffer->datas[0];
	if (d->data != NULL) {
		uint32_t n = d->maxsize - d->maxsize % si->stride;
		if (b->requested > 0)
			n = SPA_MIN(n, (uint32_t)b->requested * si->stride);
		al_cable_rt_pull(si->s->cable, d->data, n);
		d->chunk->offset = 0;
		d->chunk->stride = si->stride;
		d->chunk->size = n;
	}
	pw_stream_queue_buffer(si->stream, b);
}

/* [rt] */
static void on_process(void *data)
{
	struct pw_stream_impl *si = data;
	if (si->s->is_sink)
		sink_process(si);
	else
		source_process(si);
}

/* [loop] */
static void on_state_changed(void *data, enum pw_stream_state old, enum pw_stream_state state, const char *error)
{
	struct pw_stream_impl *si = data;
	struct al_stream *s = si->s;
	uint32_t node_id = pw_stream_get_node_id(si->stream);
	atomic_store(&s->node_id, node_id == SPA_ID_INVALID ? AL_ID_NONE : node_id);
	atomic_store(&s->state, (int)state);
	al_mirror_update_links(si->pc->c);
	struct al_host *h = si->pc->c->host;
	al_host_push(h, AL_EV_STATE, s->target.id, node_id == SPA_ID_INVALID ? -1 : (int64_t)node_id, state, error);
	(void)old;
}

/* [loop] */
static void on_param_changed(void *data, uint32_t id, const struct spa_pod *param)
{
	struct pw_stream_impl *si = data;
	struct spa_audio_info_raw info;
	if (param == NULL || id != SPA_PARAM_Format)
		return;
	if (spa_format_audio_raw_parse(param, &info) < 0)
		return;
	al_host_push(si->pc->c->host, AL_EV_FORMAT, si->s->target.id, info.rate, info.channels, NULL);
}

static const struct pw_stream_events stream_events = {
	PW_VERSION_STREAM_EVENTS,
	.state_changed = on_state_changed,
	.param_changed = on_param_changed,
	.process = on_process,
};

/* ------------------------------------------------------------------------ */
/* registry mirror and core events [loop]                                    */

static char *dup_prop(const struct spa_dict *props, const char *key)
{
	const char *v = props ? spa_dict_lookup(props, key) : NULL;
	return v ? strdup(v) : NULL;
}

static void free_client(struct al_client_info *ci)
{
	struct pw_client_impl *cl = ci->impl;
	if (cl != NULL) {
		if (cl->proxy != NULL) {
			spa_hook_remove(&cl->listener);
			pw_proxy_destroy(cl->proxy);
		}
		free(cl);
		ci->impl = NULL;
	}
	al_mirror_free_client(ci);
}

/* the bound client's info: its full props, with the real process id */
static void on_client_info(void *data, const struct pw_client_info *info)
{
	struct pw_client_impl *cl = data;
	struct al_client_info *ci = cl->ci;
	if (info == NULL || !(info->change_mask & PW_CLIENT_CHANGE_MASK_PROPS) || info->props == NULL)
		return;
	const char *v = spa_dict_lookup(info->props, PW_KEY_APP_PROCESS_ID);
	if (v != NULL && atoi(v) > 0)
		ci->pid = atoi(v);
	v = spa_dict_lookup(info->props, PW_KEY_APP_NAME);
	if (v != NULL && (ci->app_name == NULL || strcmp(ci->app_name, v) != 0)) {
		char *name = strdup(v);
		if (name != NULL) {
			free(ci->app_name);
			ci->app_name = name;
		}
	}
	/* a node's app/pid may just have become known */
	al_host_push(cl->pc->c->host, AL_EV_GRAPH, cl->pc->c->target.id, 1, ci->id, "client");
}

static const struct pw_client_events client_events = {
	PW_VERSION_CLIENT_EVENTS,
	.info = on_client_info,
};

/* a bound link's info: its state */
static void on_link_info(void *data, const struct pw_link_info *info)
{
	struct pw_bound_impl *b = data;
	struct al_link_info *l = b->info;
	if (info == NULL || !(info->change_mask & PW_LINK_CHANGE_MASK_STATE))
		return;
	bool active = info->state == PW_LINK_STATE_ACTIVE;
	if (active == l->active)
		return;
	l->active = active;
	al_mirror_update_links(b->pc->c);
}

static const struct pw_link_events link_events = {
	PW_VERSION_LINK_EVENTS,
	.info = on_link_info,
};

/* a bound client stream's info: node.latency ("num/den"), and its state:
 * only a running node takes or gives data on its links, and a
 * pipewire-pulse stream only once it answered its client */
static void on_node_info(void *data, const struct pw_node_info *info)
{
	struct pw_bound_impl *b = data;
	struct al_node_info *n = b->info;
	if (info == NULL)
		return;
	if ((info->change_mask & PW_NODE_CHANGE_MASK_PROPS) && info->props != NULL) {
		const char *v = spa_dict_lookup(info->props, PW_KEY_NODE_LATENCY);
		unsigned num = 0, den = 0;
		n->latency = v != NULL && sscanf(v, "%u/%u", &num, &den) == 2 && den > 0 ? (double)num / den : 0;
		/* pipewire-pulse (0.3.65 stream_process) drops what reaches a
		 * stream until it has answered the client's CREATE_*_STREAM, which
		 * waits for the link in its own registry; that answer sets the
		 * stream's pulse.attr.* props (the measured miss: parecord's first
		 * 512 frames, one quantum, in the contract suite) */
		const char *api = spa_dict_lookup(info->props, PW_KEY_CLIENT_API);
		n->pulse_pending = api != NULL && strcmp(api, "pipewire-pulse") == 0 &&
				   spa_dict_lookup(info->props, "pulse.attr.maxlength") == NULL;
	}
	if (info->change_mask & PW_NODE_CHANGE_MASK_STATE)
		n->running = info->state == PW_NODE_STATE_RUNNING;
	bool stopped = !n->running || n->pulse_pending;
	if (stopped != n->stopped) {
		n->stopped = stopped;
		al_mirror_update_links(b->pc->c);
	}
}

static const struct pw_node_events node_events = {
	PW_VERSION_NODE_EVENTS,
	.info = on_node_info,
};

/* binds global `id` for its info events; NULL on failure (then no info) */
static struct pw_bound_impl *bind_global(struct pw_core_impl *pc, uint32_t id, const char *type, uint32_t version, void *info)
{
	struct pw_bound_impl *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return NULL;
	b->pc = pc;
	b->info = info;
	b->proxy = pw_registry_bind(pc->registry, id, type, version, 0);
	if (b->proxy == NULL) {
		free(b);
		return NULL;
	}
	if (strcmp(type, PW_TYPE_INTERFACE_Link) == 0)
		pw_link_add_listener((struct pw_link *)b->proxy, &b->listener, &link_events, b);
	else
		pw_node_add_listener((struct pw_node *)b->proxy, &b->listener, &node_events, b);
	return b;
}

static void unbind_global(struct pw_bound_impl *b)
{
	if (b == NULL)
		return;
	spa_hook_remove(&b->listener);
	pw_proxy_destroy(b->proxy);
	free(b);
}

static void free_node(struct al_node_info *n)
{
	unbind_global(n->impl);
	n->impl = NULL;
	al_mirror_free_node(n);
}

static void free_link(struct al_link_info *l)
{
	unbind_global(l->impl);
	l->impl = NULL;
	al_list_remove(&l->link);
	free(l);
}

static void registry_global(void *data, uint32_t id, uint32_t permissions, const char *type, uint32_t version,
			    const struct spa_dict *props)
{
	struct pw_core_impl *pc = data;
	struct al_core *c = pc->c;
	uint32_t tid = c->target.id;
	if (strcmp(type, PW_TYPE_INTERFACE_Node) == 0) {
		struct al_node_info *n = calloc(1, sizeof(*n));
		if (n == NULL)
			return;
		n->id = id;
		n->name = dup_prop(props, PW_KEY_NODE_NAME);
		n->media_class = dup_prop(props, PW_KEY_MEDIA_CLASS);
		n->app_name = dup_prop(props, PW_KEY_APP_NAME);
		n->media_name = dup_prop(props, PW_KEY_MEDIA_NAME);
		const char *v = props ? spa_dict_lookup(props, PW_KEY_APP_PROCESS_ID) : NULL;
		n->pid = v ? atoi(v) : -1;
		v = props ? spa_dict_lookup(props, PW_KEY_CLIENT_ID) : NULL;
		n->client_id = v ? (uint32_t)atoi(v) : AL_ID_NONE;
		if (n->media_class != NULL && strncmp(n->media_class, "Stream/", 7) == 0) {
			n->impl = bind_global(pc, id, PW_TYPE_INTERFACE_Node, PW_VERSION_NODE, n);
			/* stopped until its first info says it runs */
			n->stopped = n->impl != NULL;
		}
		al_list_append(&c->nodes, &n->link);
		al_host_push(c->host, AL_EV_GRAPH, tid, 1, id, "node");
	} else if (strcmp(type, PW_TYPE_INTERFACE_Link) == 0) {
		const char *o = props ? spa_dict_lookup(props, PW_KEY_LINK_OUTPUT_NODE) : NULL;
		const char *i = props ? spa_dict_lookup(props, PW_KEY_LINK_INPUT_NODE) : NULL;
		if (o == NULL || i == NULL)
			return;
		struct al_link_info *l = calloc(1, sizeof(*l));
		if (l == NULL)
			return;
		l->id = id;
		l->out_node = (uint32_t)atoi(o);
		l->in_node = (uint32_t)atoi(i);
		l->impl = bind_global(pc, id, PW_TYPE_INTERFACE_Link, PW_VERSION_LINK, l);
		al_list_append(&c->links, &l->link);
		al_mirror_update_links(c);
		al_host_push(c->host, AL_EV_GRAPH, tid, 1, id, "link");
	} else if (strcmp(type, PW_TYPE_INTERFACE_Client) == 0) {
		struct al_client_info *ci = calloc(1, sizeof(*ci));
		struct pw_client_impl *cl = calloc(1, sizeof(*cl));
		if (ci == NULL || cl == NULL) {
			free(ci);
			free(cl);
			return;
		}
		ci->id = id;
		ci->app_name = dup_prop(props, PW_KEY_APP_NAME);
		ci->pid = -1;
		const char *v = props ? spa_dict_lookup(props, PW_KEY_SEC_PID) : NULL;
		ci->sec_pid = v ? atoi(v) : -1;
		ci->impl = cl;
		cl->pc = pc;
		cl->ci = ci;
		/* binding asks the server for the info event with the full props */
		cl->proxy = pw_registry_bind(pc->registry, id, PW_TYPE_INTERFACE_Client, PW_VERSION_CLIENT, 0);
		if (cl->proxy != NULL)
			pw_client_add_listener((struct pw_client *)cl->proxy, &cl->listener, &client_events, cl);
		al_list_append(&c->clients, &ci->link);
		al_host_push(c->host, AL_EV_GRAPH, tid, 1, id, "client");
	}
}

static void registry_global_remove(void *data, uint32_t id)
{
	struct pw_core_impl *pc = data;
	struct al_core *c = pc->c;
	uint32_t tid = c->target.id;
	struct al_node_info *n, *tn;
	al_list_for_each_safe(n, tn, &c->nodes, struct al_node_info, link) {
		if (n->id == id) {
			free_node(n);
			al_host_push(c->host, AL_EV_GRAPH, tid, 0, id, "node");
			return;
		}
	}
	struct al_link_info *l, *tl;
	al_list_for_each_safe(l, tl, &c->links, struct al_link_info, link) {
		if (l->id == id) {
			free_link(l);
			al_mirror_update_links(c);
			al_host_push(c->host, AL_EV_GRAPH, tid, 0, id, "link");
			return;
		}
	}
	struct al_client_info *ci, *tci;
	al_list_for_each_safe(ci, tci, &c->clients, struct al_client_info, link) {
		if (ci->id == id) {
			free_client(ci);
			al_host_push(c->host, AL_EV_GRAPH, tid, 0, id, "client");
			return;
		}
	}
}

static const struct pw_registry_events registry_events = {
	PW_VERSION_REGISTRY_EVENTS,
	.global = registry_global,
	.global_remove = registry_global_remove,
};

static void on_core_error(void *data, uint32_t id, int seq, int res, const char *message)
{
	struct pw_core_impl *pc = data;
	if (id == PW_ID_CORE && res == -EPIPE)
		atomic_store(&pc->c->connected, 0);
	al_host_push(pc->c->host, AL_EV_CORE_ERROR, pc->c->target.id, id, res, message);
}

static const struct pw_core_events core_events = {
	PW_VERSION_CORE_EVENTS,
	.error = on_core_error,
};

/* ------------------------------------------------------------------------ */
/* ops [js]                                                                  */

static void pw_close(struct al_core *c);

static int pw_open(struct al_core *c, const char *app_name)
{
	static bool inited;
	if (!inited) {
		pw_init(NULL, NULL);
		inited = true;
	}
	struct pw_core_impl *pc = calloc(1, sizeof(*pc));
	if (pc == NULL)
		return -ENOMEM;
	pc->c = c;
	c->impl = pc;
	int err;
	pc->tl = pw_thread_loop_new("audioloop-pw", NULL);
	if (pc->tl == NULL)
		goto fail_errno;
	pc->context = pw_context_new(pw_thread_loop_get_loop(pc->tl), pw_properties_new(PW_KEY_APP_NAME, app_name, NULL), 0);
	if (pc->context == NULL)
		goto fail_errno;
	if (pw_thread_loop_start(pc->tl) < 0)
		goto fail_errno;
	pw_thread_loop_lock(pc->tl);
	pc->core = pw_context_connect(pc->context, NULL, 0);
	if (pc->core == NULL) {
		err = errno ? errno : ECONNREFUSED;
		pw_thread_loop_unlock(pc->tl);
		pw_close(c);
		return -err;
	}
	atomic_store(&c->connected, 1);
	pw_core_add_listener(pc->core, &pc->core_listener, &core_events, pc);
	pc->registry = pw_core_get_registry(pc->core, PW_VERSION_REGISTRY, 0);
	pw_registry_add_listener(pc->registry, &pc->registry_listener, &registry_events, pc);
	pw_thread_loop_unlock(pc->tl);
	return 0;

fail_errno:
	err = errno ? errno : EIO;
	pw_close(c);
	return -err;
}

static void pw_close(struct al_core *c)
{
	struct pw_core_impl *pc = c->impl;
	if (pc == NULL)
		return;
	if (pc->tl) {
		pw_thread_loop_lock(pc->tl);
		struct al_client_info *ci, *tci;
		al_list_for_each_safe(ci, tci, &c->clients, struct al_client_info, link)
			free_client(ci);
		struct al_node_info *n, *tn;
		al_list_for_each_safe(n, tn, &c->nodes, struct al_node_info, link)
			free_node(n);
		struct al_link_info *l, *tl;
		al_list_for_each_safe(l, tl, &c->links, struct al_link_info, link)
			free_link(l);
		if (pc->registry) {
			spa_hook_remove(&pc->registry_listener);
			pw_proxy_destroy((struct pw_proxy *)pc->registry);
			pc->registry = NULL;
		}
		if (pc->core) {
			spa_hook_remove(&pc->core_listener);
			pw_core_disconnect(pc->core);
			pc->core = NULL;
		}
		pw_thread_loop_unlock(pc->tl);
		pw_thread_loop_stop(pc->tl);
		if (pc->context)
			pw_context_destroy(pc->context);
		pw_thread_loop_destroy(pc->tl);
	}
	free(pc);
	c->impl = NULL;
}

static void pw_lock(struct al_core *c)
{
	struct pw_core_impl *pc = c->impl;
	if (pc && pc->tl)
		pw_thread_loop_lock(pc->tl);
}

static void pw_unlock(struct al_core *c)
{
	struct pw_core_impl *pc = c->impl;
	if (pc && pc->tl)
		pw_thread_loop_unlock(pc->tl);
}

/* [js, locked] */
static int pw_stream_new_op(struct al_core *c, struct al_stream *s, const struct al_stream_params *p)
{
	struct pw_core_impl *pc = c->impl;
	struct al_cable *cable = s->cable;
	if (pc == NULL || pc->core == NULL)
		return -EPIPE;
	struct pw_stream_impl *si = calloc(1, sizeof(*si));
	if (si == NULL)
		return -ENOMEM;
	si->s = s;
	si->pc = pc;
	si->stride = cable->stride;
	/* a source's first cycle with a client's link seen flowing plays
	 * silence: seen about once in a hundred sessions on a busy machine (the
	 * contract suite), the first quantum after the link turned active, the
	 * pipewire-pulse stream answered and its node ran was still lost by
	 * parecord; otherwise that first cycle is as often our silence anyway */
	cable->settle_cycles = 1;

	char rate_str[32], latency_str[64];
	snprintf(rate_str, sizeof(rate_str), "1/%u", cable->rate);
	struct pw_properties *props = pw_properties_new(
		PW_KEY_MEDIA_TYPE, "Audio",
		PW_KEY_MEDIA_CATEGORY, p->is_sink ? "Capture" : "Playback",
		PW_KEY_MEDIA_CLASS, p->is_sink ? "Audio/Sink" : "Audio/Source",
		PW_KEY_NODE_NAME, p->name,
		PW_KEY_NODE_DESCRIPTION, p->description,
		PW_KEY_MEDIA_NAME, p->description,
		PW_KEY_NODE_RATE, rate_str,
		"node.virtual", "true",
		"audioloop.instance", p->name,
		NULL);
	/* A sink runs from creation on, like an open device: a node that only
	 * starts when the first client links loses that client's first quantum
	 * (the client runs one cycle before we do). Client presence comes from
	 * the link count instead of the stream state. */
	if (p->is_sink)
		pw_properties_set(props, "node.always-process", "true");
	for (uint32_t i = 0; i + 1 < p->n_props * 2; i += 2)
		pw_properties_set(props, p->props[i], p->props[i + 1]);
	if (p->latency_frames > 0) {
		snprintf(latency_str, sizeof(latency_str), "%u/%u", p->latency_frames, cable->rate);
		pw_properties_set(props, PW_KEY_NODE_LATENCY, latency_str);
	}

	uint8_t pod_buf[1024];
	struct spa_pod_builder builder = SPA_POD_BUILDER_INIT(pod_buf, sizeof(pod_buf));
	struct spa_audio_info_raw raw = { .format = spa_format_of(cable->fmt->sample), .rate = cable->rate,
					  .channels = cable->channels };
	set_positions(raw.position, cable->channels);
	const struct spa_pod *params[1];
	params[0] = spa_format_audio_raw_build(&builder, SPA_PARAM_EnumFormat, &raw);

	si->stream = pw_stream_new(pc->core, p->name, props);
	if (si->stream == NULL) {
		int res = errno ? -errno : -ENOMEM;
		free(si);
		return res;
	}
	s->impl = si;
	atomic_store(&s->state, PW_STREAM_STATE_UNCONNECTED);
	pw_stream_add_listener(si->stream, &si->listener, &stream_events, si);
	int res = pw_stream_connect(si->stream, p->is_sink ? PW_DIRECTION_INPUT : PW_DIRECTION_OUTPUT, PW_ID_ANY,
				    PW_STREAM_FLAG_MAP_BUFFERS | PW_STREAM_FLAG_RT_PROCESS, params, 1);
	if (res < 0) {
		pw_stream_destroy(si->stream);
		free(si);
		s->impl = NULL;
		return res;
	}
	return 0;
}

static void pw_stream_destroy_op(struct al_core *c, struct al_stream *s)
{
	struct pw_core_impl *pc = c->impl;
	struct pw_stream_impl *si = s->impl;
	if (si == NULL)
		return;
	if (pc != NULL && pc->tl != NULL) {
		pw_thread_loop_lock(pc->tl);
		pw_stream_destroy(si->stream); /* waits for [rt] to leave on_process */
		pw_thread_loop_unlock(pc->tl);
	}
	free(si);
	s->impl = NULL;
}

static const char *pw_state_name_op(int code)
{
	return pw_stream_state_as_string((enum pw_stream_state)code);
}

static int pw_destroy_global_op(struct al_core *c, uint32_t id)
{
	struct pw_core_impl *pc = c->impl;
	if (pc == NULL || pc->registry == NULL)
		return -EBADF;
	pw_thread_loop_lock(pc->tl);
	int res = pw_registry_destroy(pc->registry, id);
	pw_thread_loop_unlock(pc->tl);
	return res < 0 ? res : 0;
}

static const char *pw_version_compiled(void)
{
	return pw_get_headers_version();
}

static const char *pw_version_linked(void)
{
	return pw_get_library_version();
}

static const char *pw_strerror_op(int err)
{
	return spa_strerror(err);
}

const struct al_backend_ops al_pipewire_ops = {
	.name = "pipewire",
	.open = pw_open,
	.close = pw_close,
	.lock = pw_lock,
	.unlock = pw_unlock,
	.stream_new = pw_stream_new_op,
	.stream_destroy = pw_stream_destroy_op,
	.state_name = pw_state_name_op,
	.destroy_global = pw_destroy_global_op,
	.version_compiled = pw_version_compiled,
	.version_linked = pw_version_linked,
	.strerror = pw_strerror_op,
};
