/*
 * audioloop native addon: PipeWire streams as virtual devices.
 *
 * One `struct al_core` per JS environment owns a pw_thread_loop, a context,
 * the core connection and a registry mirror (nodes, links, clients).  Each
 * `struct al_stream` (the "cable" end on the sound server) owns one
 * pw_stream that is either
 *   - an Audio/Sink   (clients play into it; the realtime callback copies
 *                      PCM into the ring; JS reads it), or
 *   - an Audio/Source (JS writes PCM into the ring; the realtime callback
 *                      copies it out to clients, silence on underrun).
 *
 * Threads and locks (every function below says which one it runs under):
 *   [js]   the Node.js main thread.
 *   [loop] the pw_thread_loop thread; also [js] while holding the thread
 *          loop lock (pw_thread_loop_lock).  Stream state, registry and
 *          core events arrive here.
 *   [rt]   the PipeWire data thread (PW_STREAM_FLAG_RT_PROCESS): only
 *          on_process runs here.  No locks, no allocation, no JS: it only
 *          touches the ring (lock-free SPSC), atomics and uv_async_send.
 *
 * Events from [loop] go through a mutex-protected queue (never touched by
 * [rt]); data wake-ups from [rt] set an atomic flag on the stream.  Both
 * are delivered to JS in batches by a single uv_async_t per core.
 *
 * All functions return negative errno values on failure; the JS layer maps
 * them to Error objects with stable codes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <node_api.h>
#include <uv.h>

#include <pipewire/pipewire.h>
#include <spa/param/audio/format-utils.h>
#include <spa/utils/result.h>

#define AL_MAX_EVENT_TEXT 256

/* ------------------------------------------------------------------------ */
/* format table                                                              */

struct format_info {
	const char *name;
	uint32_t spa_format;
	uint32_t bytes;    /* per sample */
	uint8_t silence;   /* byte value of digital silence */
};

static const struct format_info format_info[] = {
	{ "u8",    SPA_AUDIO_FORMAT_U8,     1, 0x80 },
	{ "s16le", SPA_AUDIO_FORMAT_S16_LE, 2, 0x00 },
	{ "s24le", SPA_AUDIO_FORMAT_S24_LE, 3, 0x00 },
	{ "s32le", SPA_AUDIO_FORMAT_S32_LE, 4, 0x00 },
	{ "f32le", SPA_AUDIO_FORMAT_F32_LE, 4, 0x00 },
};

static const struct format_info *find_format(const char *name)
{
	for (size_t i = 0; i < SPA_N_ELEMENTS(format_info); i++)
		if (strcmp(format_info[i].name, name) == 0)
			return &format_info[i];
	return NULL;
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
/* lock-free single-producer single-consumer byte ring                        */
/*
 * `size` is a power of two; `wr` and `rd` are free-running 32-bit byte
 * counters (wrap-around arithmetic), so fill = wr - rd.  The producer only
 * stores `wr`, the consumer only stores `rd`; release/acquire pairs make the
 * copied bytes visible before the index that publishes them.
 */
struct ring {
	uint8_t *data;
	uint32_t size;
	uint32_t mask;
	_Atomic uint32_t wr;
	_Atomic uint32_t rd;
};

static uint32_t ring_fill(struct ring *r)
{
	return atomic_load_explicit(&r->wr, memory_order_acquire) -
	       atomic_load_explicit(&r->rd, memory_order_acquire);
}

/* producer side: copies min(n, free) bytes, returns bytes copied */
static uint32_t ring_write(struct ring *r, const uint8_t *src, uint32_t n)
{
	uint32_t wr = atomic_load_explicit(&r->wr, memory_order_relaxed);
	uint32_t rd = atomic_load_explicit(&r->rd, memory_order_acquire);
	uint32_t space = r->size - (wr - rd);
	if (n > space)
		n = space;
	uint32_t off = wr & r->mask;
	uint32_t first = SPA_MIN(n, r->size - off);
	memcpy(r->data + off, src, first);
	memcpy(r->data, src + first, n - first);
	atomic_store_explicit(&r->wr, wr + n, memory_order_release);
	return n;
}

/* consumer side: copies min(n, fill) bytes, returns bytes copied */
static uint32_t ring_read(struct ring *r, uint8_t *dst, uint32_t n)
{
	uint32_t rd = atomic_load_explicit(&r->rd, memory_order_relaxed);
	uint32_t wr = atomic_load_explicit(&r->wr, memory_order_acquire);
	uint32_t avail = wr - rd;
	if (n > avail)
		n = avail;
	uint32_t off = rd & r->mask;
	uint32_t first = SPA_MIN(n, r->size - off);
	memcpy(dst, r->data + off, first);
	memcpy(dst + first, r->data, n - first);
	atomic_store_explicit(&r->rd, rd + n, memory_order_release);
	return n;
}

/* ------------------------------------------------------------------------ */
/* context structs                                                           */

enum al_event_type {
	AL_EV_STATE = 1,     /* stream state changed: a = state, text = error */
	AL_EV_FORMAT,        /* stream format negotiated: a = rate */
	AL_EV_CORE_ERROR,    /* core error: a = id, b = res, text = message */
	AL_EV_GRAPH,         /* a link or node appeared/vanished */
	AL_EV_LINKS,         /* links to our node from clients: a = count */
};

struct al_event {
	struct spa_list link;
	int type;
	uint32_t stream_id;  /* 0: core event */
	int64_t a, b;
	char text[AL_MAX_EVENT_TEXT];
};

struct al_node_info {
	struct spa_list link;
	uint32_t id;
	uint32_t client_id;
	char *name;
	char *media_class;
	char *app_name;
	char *media_name;
	int32_t pid;
};

struct al_link_info {
	struct spa_list link;
	uint32_t id;
	uint32_t out_node;
	uint32_t in_node;
};

struct al_core;

/*
 * A PipeWire Client global (one connection to the server).  Its global
 * props carry no usable process id for PulseAudio-protocol clients (their
 * pipewire.sec.pid is pipewire-pulse's), so the client is bound and the
 * props of its info event (application.process.id, which the application
 * sets itself) fill in app_name and pid.  [loop] only, like the other
 * mirrors; never touched by [rt].
 */
struct al_client_info {
	struct spa_list link;
	struct al_core *core;
	uint32_t id;
	char *app_name;
	int32_t pid;                     /* application.process.id, -1 until known */
	int32_t sec_pid;                 /* pipewire.sec.pid (the socket peer), -1 if absent */
	struct pw_proxy *proxy;          /* bound pw_client, NULL if binding failed */
	struct spa_hook client_listener;
};

struct al_stream {
	struct spa_list link;            /* in core->streams, [js] only */
	struct al_core *core;
	uint32_t id;                     /* our handle id for events */
	bool is_sink;                    /* Audio/Sink: clients -> ring -> JS */
	bool destroyed;                  /* [js] */
	const struct format_info *fmt;
	uint32_t rate, channels, stride;

	struct pw_stream *stream;        /* [loop] */
	struct spa_hook listener;

	struct ring ring;
	uint32_t wake_bytes;             /* wake JS when fill (sink) or space (source) reaches this */

	/* written by [rt], read anywhere */
	_Atomic int wake;                /* data wake-up pending for JS */
	_Atomic uint64_t frames_rt;      /* frames moved by the rt callback */
	_Atomic uint64_t xruns;          /* overruns (sink) / underruns (source) */
	_Atomic uint64_t xrun_bytes;     /* bytes dropped (sink) or silence inserted (source) */
	_Atomic uint64_t cycles;         /* process callbacks */
	_Atomic uint32_t last_quantum;   /* frames in the last cycle */
	_Atomic int primed;              /* source: JS has written since the last underrun */
	_Atomic int want_space;          /* source: JS waits for free space (set by [js]) */
	_Atomic int state;               /* enum pw_stream_state, set in [loop] */
	_Atomic uint32_t node_id;        /* set in [loop] */
	_Atomic uint32_t links;          /* client links into (sink) / out of (source) our node, set in [loop] */

	napi_ref callback;               /* [js] */
};

struct al_core {
	napi_env env;
	struct pw_thread_loop *tl;
	struct pw_context *context;
	struct pw_core *core;
	struct spa_hook core_listener;
	struct pw_registry *registry;
	struct spa_hook registry_listener;

	struct spa_list nodes;           /* [loop] al_node_info */
	struct spa_list links;           /* [loop] al_link_info */
	struct spa_list clients;         /* [loop] al_client_info */

	pthread_mutex_t ev_lock;         /* protects events; never taken in [rt] */
	struct spa_list events;

	uv_async_t async;                /* [js] owns; uv_async_send from anywhere */
	bool async_ref;
	struct spa_list streams;         /* changed by [js] under the thread loop lock; read by [loop] */
	uint32_t next_stream_id;
	uint32_t live_streams;
	bool closed;                     /* [js] */
	napi_ref callback;               /* [js] core events */
	napi_async_context async_ctx;
	_Atomic int connected;
};

/* ------------------------------------------------------------------------ */
/* events: [loop] pushes, [js] pops                                          */

static void push_event(struct al_core *c, int type, uint32_t stream_id, int64_t a, int64_t b,
		       const char *text)
{
	struct al_event *ev = calloc(1, sizeof(*ev));
	if (ev == NULL)
		return;
	ev->type = type;
	ev->stream_id = stream_id;
	ev->a = a;
	ev->b = b;
	if (text)
		snprintf(ev->text, sizeof(ev->text), "%s", text);
	pthread_mutex_lock(&c->ev_lock);
	spa_list_append(&c->events, &ev->link);
	pthread_mutex_unlock(&c->ev_lock);
	uv_async_send(&c->async);
}

/* ------------------------------------------------------------------------ */
/* stream callbacks                                                          */

/* [rt] true when every byte is the silence byte */
static bool is_silence(const uint8_t *p, uint32_t n, uint8_t silence)
{
	for (uint32_t i = 0; i < n; i++)
		if (p[i] != silence)
			return false;
	return true;
}

/* [rt] sink: every buffer the graph queued for us goes into the ring */
static void sink_process(struct al_stream *s)
{
	struct pw_buffer *b;
	uint32_t frames = 0;
	bool dropped = false;

	/* drain the queue: a buffer left behind would be recycled unread */
	while ((b = pw_stream_dequeue_buffer(s->stream)) != NULL) {
		struct spa_data *d = &b->buffer->datas[0];
		if (d->data != NULL) {
			uint32_t off = SPA_MIN(d->chunk->offset, d->maxsize);
			uint32_t n = SPA_MIN(d->chunk->size, d->maxsize - off);
			n -= n % s->stride;
			const uint8_t *src = SPA_PTROFF(d->data, off, uint8_t);
			/* The node always runs (see stream creation); with no client
			 * linked it only hears silence, which is not kept. Anything
			 * that is not silence is kept even before the link is seen. */
			if (atomic_load_explicit(&s->links, memory_order_acquire) == 0 &&
			    is_silence(src, n, s->fmt->silence)) {
				pw_stream_queue_buffer(s->stream, b);
				continue;
			}
			uint32_t done = ring_write(&s->ring, src, n);
			if (done < n) {
				dropped = true;
				atomic_fetch_add_explicit(&s->xrun_bytes, n - done, memory_order_relaxed);
			}
			frames += n / s->stride;
		}
		pw_stream_queue_buffer(s->stream, b);
	}
	if (dropped)
		atomic_fetch_add_explicit(&s->xruns, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->frames_rt, frames, memory_order_relaxed);
	atomic_store_explicit(&s->last_quantum, frames, memory_order_relaxed);
	if (ring_fill(&s->ring) >= s->wake_bytes || dropped) {
		atomic_store_explicit(&s->wake, 1, memory_order_release);
		uv_async_send(&s->core->async);
	}
}

/* [rt] source: copy min(avail, n) out of the ring, fill the rest with silence */
static void source_process(struct al_stream *s)
{
	struct pw_buffer *b = pw_stream_dequeue_buffer(s->stream);
	if (b == NULL)
		return;
	struct spa_data *d = &b->buffer->datas[0];
	uint32_t n = 0;
	if (d->data != NULL) {
		n = d->maxsize - d->maxsize % s->stride;
		if (b->requested > 0)
			n = SPA_MIN(n, (uint32_t)b->requested * s->stride);
		uint32_t done = ring_read(&s->ring, d->data, n);
		if (done < n) {
			memset(SPA_PTROFF(d->data, done, uint8_t), s->fmt->silence, n - done);
			/* an underrun counts only once JS has started writing; it
			 * counts once per gap, with the silence of that cycle */
			if (atomic_exchange_explicit(&s->primed, 0, memory_order_acq_rel)) {
				atomic_fetch_add_explicit(&s->xruns, 1, memory_order_relaxed);
				atomic_fetch_add_explicit(&s->xrun_bytes, n - done, memory_order_relaxed);
			}
		}
		d->chunk->offset = 0;
		d->chunk->stride = s->stride;
		d->chunk->size = n;
	}
	pw_stream_queue_buffer(s->stream, b);
	atomic_fetch_add_explicit(&s->frames_rt, n / s->stride, memory_order_relaxed);
	atomic_store_explicit(&s->last_quantum, n / s->stride, memory_order_relaxed);
	if (atomic_load_explicit(&s->want_space, memory_order_acquire) &&
	    s->ring.size - ring_fill(&s->ring) >= s->wake_bytes &&
	    atomic_exchange_explicit(&s->want_space, 0, memory_order_acq_rel)) {
		atomic_store_explicit(&s->wake, 1, memory_order_release);
		uv_async_send(&s->core->async);
	}
}

/* [rt] the realtime callback */
static void on_process(void *data)
{
	struct al_stream *s = data;
	if (s->is_sink)
		sink_process(s);
	else
		source_process(s);
	atomic_fetch_add_explicit(&s->cycles, 1, memory_order_relaxed);
}

static void update_links(struct al_core *c);

/* [loop] */
static void on_state_changed(void *data, enum pw_stream_state old, enum pw_stream_state state,
			     const char *error)
{
	struct al_stream *s = data;
	uint32_t node_id = pw_stream_get_node_id(s->stream);
	atomic_store(&s->node_id, node_id);
	atomic_store(&s->state, (int)state);
	update_links(s->core);
	push_event(s->core, AL_EV_STATE, s->id, state, node_id == SPA_ID_INVALID ? -1 : (int64_t)node_id,
		   error);
}

/* [loop] */
static void on_param_changed(void *data, uint32_t id, const struct spa_pod *param)
{
	struct al_stream *s = data;
	struct spa_audio_info_raw info;
	if (param == NULL || id != SPA_PARAM_Format)
		return;
	if (spa_format_audio_raw_parse(param, &info) < 0)
		return;
	push_event(s->core, AL_EV_FORMAT, s->id, info.rate, info.channels, NULL);
}

static const struct pw_stream_events stream_events = {
	PW_VERSION_STREAM_EVENTS,
	.state_changed = on_state_changed,
	.param_changed = on_param_changed,
	.process = on_process,
};

/* ------------------------------------------------------------------------ */
/* registry mirror and core events                                           */

static char *dup_prop(const struct spa_dict *props, const char *key)
{
	const char *v = props ? spa_dict_lookup(props, key) : NULL;
	return v ? strdup(v) : NULL;
}

static void free_node_info(struct al_node_info *n)
{
	spa_list_remove(&n->link);
	free(n->name);
	free(n->media_class);
	free(n->app_name);
	free(n->media_name);
	free(n);
}

/* [loop] stops listening to a client global and frees it */
static void free_client_info(struct al_client_info *ci)
{
	spa_list_remove(&ci->link);
	if (ci->proxy != NULL) {
		spa_hook_remove(&ci->client_listener);
		pw_proxy_destroy(ci->proxy);
		ci->proxy = NULL;
	}
	free(ci->app_name);
	free(ci);
}

/* [loop] the bound client's info: its full props, with the real process id */
static void on_client_info(void *data, const struct pw_client_info *info)
{
	struct al_client_info *ci = data;
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
	push_event(ci->core, AL_EV_GRAPH, 0, 1, ci->id, "client");
}

static const struct pw_client_events client_events = {
	PW_VERSION_CLIENT_EVENTS,
	.info = on_client_info,
};

/* [loop] counts client links per stream and reports changes between zero and non-zero */
static void update_links(struct al_core *c)
{
	struct al_stream *s;
	spa_list_for_each(s, &c->streams, link) {
		if (s->destroyed)
			continue;
		uint32_t node_id = atomic_load(&s->node_id), count = 0;
		struct al_link_info *l;
		if (node_id != SPA_ID_INVALID) {
			spa_list_for_each(l, &c->links, link)
				if ((s->is_sink ? l->in_node : l->out_node) == node_id)
					count++;
		}
		uint32_t old = atomic_exchange(&s->links, count);
		if ((old == 0) != (count == 0))
			push_event(c, AL_EV_LINKS, s->id, count, 0, NULL);
	}
}

/* [loop] */
static void registry_global(void *data, uint32_t id, uint32_t permissions, const char *type,
			    uint32_t version, const struct spa_dict *props)
{
	struct al_core *c = data;
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
		n->client_id = v ? (uint32_t)atoi(v) : SPA_ID_INVALID;
		spa_list_append(&c->nodes, &n->link);
		push_event(c, AL_EV_GRAPH, 0, 1, id, "node");
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
		spa_list_append(&c->links, &l->link);
		update_links(c);
		push_event(c, AL_EV_GRAPH, 0, 1, id, "link");
	} else if (strcmp(type, PW_TYPE_INTERFACE_Client) == 0) {
		struct al_client_info *ci = calloc(1, sizeof(*ci));
		if (ci == NULL)
			return;
		ci->core = c;
		ci->id = id;
		ci->app_name = dup_prop(props, PW_KEY_APP_NAME);
		ci->pid = -1;
		const char *v = props ? spa_dict_lookup(props, PW_KEY_SEC_PID) : NULL;
		ci->sec_pid = v ? atoi(v) : -1;
		/* binding asks the server for the info event with the full props */
		ci->proxy = pw_registry_bind(c->registry, id, PW_TYPE_INTERFACE_Client, PW_VERSION_CLIENT, 0);
		if (ci->proxy != NULL)
			pw_client_add_listener((struct pw_client *)ci->proxy, &ci->client_listener, &client_events, ci);
		spa_list_append(&c->clients, &ci->link);
		push_event(c, AL_EV_GRAPH, 0, 1, id, "client");
	}
}

/* [loop] */
static void registry_global_remove(void *data, uint32_t id)
{
	struct al_core *c = data;
	struct al_node_info *n, *tn;
	struct al_link_info *l, *tl;
	spa_list_for_each_safe(n, tn, &c->nodes, link) {
		if (n->id == id) {
			free_node_info(n);
			push_event(c, AL_EV_GRAPH, 0, 0, id, "node");
			return;
		}
	}
	spa_list_for_each_safe(l, tl, &c->links, link) {
		if (l->id == id) {
			spa_list_remove(&l->link);
			free(l);
			update_links(c);
			push_event(c, AL_EV_GRAPH, 0, 0, id, "link");
			return;
		}
	}
	struct al_client_info *ci, *tci;
	spa_list_for_each_safe(ci, tci, &c->clients, link) {
		if (ci->id == id) {
			free_client_info(ci);
			push_event(c, AL_EV_GRAPH, 0, 0, id, "client");
			return;
		}
	}
}

static const struct pw_registry_events registry_events = {
	PW_VERSION_REGISTRY_EVENTS,
	.global = registry_global,
	.global_remove = registry_global_remove,
};

/* [loop] */
static void on_core_error(void *data, uint32_t id, int seq, int res, const char *message)
{
	struct al_core *c = data;
	if (id == PW_ID_CORE && res == -EPIPE)
		atomic_store(&c->connected, 0);
	push_event(c, AL_EV_CORE_ERROR, 0, id, res, message);
}

static const struct pw_core_events core_events = {
	PW_VERSION_CORE_EVENTS,
	.error = on_core_error,
};

/* ------------------------------------------------------------------------ */
/* N-API helpers                                                             */

#define NAPI_CALL(env, call)                                                         \
	do {                                                                         \
		napi_status status__ = (call);                                       \
		if (status__ != napi_ok) {                                           \
			const napi_extended_error_info *info__ = NULL;               \
			napi_get_last_error_info((env), &info__);                    \
			bool pending__;                                              \
			napi_is_exception_pending((env), &pending__);                \
			if (!pending__)                                              \
				napi_throw_error((env), NULL,                        \
						 info__ && info__->error_message     \
							 ? info__->error_message     \
							 : "N-API call failed");     \
			return NULL;                                                 \
		}                                                                    \
	} while (0)

static napi_value make_int(napi_env env, int64_t v)
{
	napi_value r;
	napi_create_int64(env, v, &r);
	return r;
}

static napi_value make_double(napi_env env, double v)
{
	napi_value r;
	napi_create_double(env, v, &r);
	return r;
}

static napi_value make_str(napi_env env, const char *s)
{
	napi_value r;
	if (s == NULL) {
		napi_get_null(env, &r);
		return r;
	}
	napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &r);
	return r;
}

static void set_prop(napi_env env, napi_value obj, const char *key, napi_value v)
{
	napi_set_named_property(env, obj, key, v);
}

/* reads an optional uint32 property; returns false if absent */
static bool get_u32(napi_env env, napi_value obj, const char *key, uint32_t *out)
{
	bool has = false;
	napi_value v;
	napi_valuetype t;
	if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has)
		return false;
	if (napi_get_named_property(env, obj, key, &v) != napi_ok)
		return false;
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_number)
		return false;
	return napi_get_value_uint32(env, v, out) == napi_ok;
}

/* reads an optional string property into buf; returns false if absent */
static bool get_str(napi_env env, napi_value obj, const char *key, char *buf, size_t len)
{
	bool has = false;
	napi_value v;
	napi_valuetype t;
	size_t n;
	if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has)
		return false;
	if (napi_get_named_property(env, obj, key, &v) != napi_ok)
		return false;
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_string)
		return false;
	return napi_get_value_string_utf8(env, v, buf, len, &n) == napi_ok;
}

static const char *state_name(int state)
{
	return pw_stream_state_as_string((enum pw_stream_state)state);
}

/* [js] calls a JS callback from a libuv callback, with a handle scope */
static void call_js(struct al_core *c, napi_ref ref, int argc, napi_value *argv)
{
	napi_env env = c->env;
	napi_value fn, global, result;
	if (ref == NULL || napi_get_reference_value(env, ref, &fn) != napi_ok || fn == NULL)
		return;
	napi_get_global(env, &global);
	napi_make_callback(env, c->async_ctx, global, fn, argc, argv, &result);
}

static struct al_stream *find_stream(struct al_core *c, uint32_t id)
{
	struct al_stream *s;
	spa_list_for_each(s, &c->streams, link)
		if (s->id == id)
			return s;
	return NULL;
}

static void update_async_ref(struct al_core *c)
{
	bool want = c->live_streams > 0;
	if (want == c->async_ref || c->closed)
		return;
	if (want)
		uv_ref((uv_handle_t *)&c->async);
	else
		uv_unref((uv_handle_t *)&c->async);
	c->async_ref = want;
}

/* [js] the batched wake-up: deliver queued [loop] events, then data wakes */
static void on_async(uv_async_t *handle)
{
	struct al_core *c = handle->data;
	napi_env env = c->env;
	struct spa_list local;
	struct al_event *ev, *tev;
	napi_handle_scope scope;

	if (c->closed)
		return;
	spa_list_init(&local);
	pthread_mutex_lock(&c->ev_lock);
	spa_list_insert_list(&local, &c->events);
	spa_list_init(&c->events);
	pthread_mutex_unlock(&c->ev_lock);

	napi_open_handle_scope(env, &scope);
	spa_list_for_each_safe(ev, tev, &local, link) {
		spa_list_remove(&ev->link);
		if (!c->closed) {
			if (ev->stream_id == 0) {
				napi_value argv[4];
				const char *kind = ev->type == AL_EV_CORE_ERROR ? "error" : "graph";
				argv[0] = make_str(env, kind);
				argv[1] = make_int(env, ev->a);
				argv[2] = make_int(env, ev->b);
				argv[3] = make_str(env, ev->text[0] ? ev->text : NULL);
				call_js(c, c->callback, 4, argv);
			} else {
				struct al_stream *s = find_stream(c, ev->stream_id);
				if (s != NULL && !s->destroyed) {
					napi_value argv[4];
					if (ev->type == AL_EV_STATE) {
						argv[0] = make_str(env, "state");
						argv[1] = make_str(env, state_name((int)ev->a));
					} else if (ev->type == AL_EV_LINKS) {
						argv[0] = make_str(env, "links");
						argv[1] = make_int(env, ev->a);
					} else {
						argv[0] = make_str(env, "format");
						argv[1] = make_int(env, ev->a);
					}
					argv[2] = make_int(env, ev->b);
					argv[3] = make_str(env, ev->text[0] ? ev->text : NULL);
					call_js(c, s->callback, 4, argv);
				}
			}
		}
		free(ev);
	}

	struct al_stream *s, *ts;
	spa_list_for_each_safe(s, ts, &c->streams, link) {
		if (c->closed)
			break;
		if (s->destroyed)
			continue;
		if (atomic_exchange_explicit(&s->wake, 0, memory_order_acq_rel)) {
			napi_value argv[1] = { make_str(env, "data") };
			call_js(c, s->callback, 1, argv);
		}
	}
	napi_close_handle_scope(env, scope);
}

/* ------------------------------------------------------------------------ */
/* stream lifetime                                                           */

/* [js] idempotent: tears the pw_stream down; memory stays until GC */
static void stream_destroy(struct al_stream *s)
{
	if (s->destroyed)
		return;
	s->destroyed = true;
	struct al_core *c = s->core;
	if (s->stream != NULL && c->tl != NULL) {
		pw_thread_loop_lock(c->tl);
		pw_stream_destroy(s->stream);  /* waits for [rt] to leave on_process */
		pw_thread_loop_unlock(c->tl);
	}
	s->stream = NULL;
	if (c->tl != NULL) {
		pw_thread_loop_lock(c->tl);
		spa_list_remove(&s->link);
		pw_thread_loop_unlock(c->tl);
	} else {
		spa_list_remove(&s->link);
	}
	if (s->callback) {
		napi_delete_reference(c->env, s->callback);
		s->callback = NULL;
	}
	c->live_streams--;
	update_async_ref(c);
}

static void on_async_closed(uv_handle_t *h)
{
	struct al_core *c = h->data;
	pthread_mutex_destroy(&c->ev_lock);
	free(c);
}

/* [js] idempotent: destroys every stream, stops the thread, frees on close */
static void core_close(struct al_core *c)
{
	if (c->closed)
		return;
	struct al_stream *s, *ts;
	spa_list_for_each_safe(s, ts, &c->streams, link)
		stream_destroy(s);
	c->closed = true;
	if (c->tl) {
		pw_thread_loop_lock(c->tl);
		struct al_client_info *ci, *tci;
		spa_list_for_each_safe(ci, tci, &c->clients, link)
			free_client_info(ci);
		if (c->registry) {
			spa_hook_remove(&c->registry_listener);
			pw_proxy_destroy((struct pw_proxy *)c->registry);
			c->registry = NULL;
		}
		if (c->core) {
			spa_hook_remove(&c->core_listener);
			pw_core_disconnect(c->core);
			c->core = NULL;
		}
		pw_thread_loop_unlock(c->tl);
		pw_thread_loop_stop(c->tl);
		if (c->context)
			pw_context_destroy(c->context);
		pw_thread_loop_destroy(c->tl);
		c->context = NULL;
		c->tl = NULL;
	}
	struct al_node_info *n, *tn;
	spa_list_for_each_safe(n, tn, &c->nodes, link)
		free_node_info(n);
	struct al_client_info *ci, *tci;
	spa_list_for_each_safe(ci, tci, &c->clients, link) {
		ci->proxy = NULL; /* already gone with the core */
		free_client_info(ci);
	}
	struct al_link_info *l, *tl;
	spa_list_for_each_safe(l, tl, &c->links, link) {
		spa_list_remove(&l->link);
		free(l);
	}
	struct al_event *ev, *tev;
	spa_list_for_each_safe(ev, tev, &c->events, link) {
		spa_list_remove(&ev->link);
		free(ev);
	}
	if (c->callback) {
		napi_delete_reference(c->env, c->callback);
		c->callback = NULL;
	}
	if (c->async_ctx) {
		napi_async_destroy(c->env, c->async_ctx);
		c->async_ctx = NULL;
	}
	uv_close((uv_handle_t *)&c->async, on_async_closed);
}

static void cleanup_hook(void *arg)
{
	core_close(arg);
}

/* ------------------------------------------------------------------------ */
/* exported functions [js]                                                   */

struct core_handle {
	struct al_core *c;
};

struct stream_handle {
	struct al_stream *s;
};

static void core_handle_finalize(napi_env env, void *data, void *hint)
{
	/* the core lives until close() or environment cleanup */
	free(data);
}

static void stream_handle_finalize(napi_env env, void *data, void *hint)
{
	struct stream_handle *h = data;
	struct al_stream *s = h->s;
	if (s != NULL) {
		if (!s->destroyed && !s->core->closed)
			stream_destroy(s);
		free(s->ring.data);
		free(s);
	}
	free(h);
}

static struct al_core *get_core(napi_env env, napi_value v)
{
	struct core_handle *h = NULL;
	if (napi_get_value_external(env, v, (void **)&h) != napi_ok || h == NULL)
		return NULL;
	return h->c;
}

static struct al_stream *get_stream(napi_env env, napi_value v)
{
	struct stream_handle *h = NULL;
	if (napi_get_value_external(env, v, (void **)&h) != napi_ok || h == NULL)
		return NULL;
	return h->s;
}

/* coreOpen(callback(kind, a, b, text), name?) -> external | negative errno */
static napi_value js_core_open(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	char app_name[128] = "audioloop";
	if (argc >= 2) {
		size_t n;
		napi_get_value_string_utf8(env, argv[1], app_name, sizeof(app_name), &n);
	}

	struct al_core *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return make_int(env, -ENOMEM);
	c->env = env;
	spa_list_init(&c->nodes);
	spa_list_init(&c->links);
	spa_list_init(&c->clients);
	spa_list_init(&c->events);
	spa_list_init(&c->streams);
	c->next_stream_id = 1;
	pthread_mutex_init(&c->ev_lock, NULL);

	uv_loop_t *loop = NULL;
	napi_get_uv_event_loop(env, &loop);
	uv_async_init(loop, &c->async, on_async);
	c->async.data = c;
	uv_unref((uv_handle_t *)&c->async);

	napi_value res_name;
	napi_create_string_utf8(env, "audioloop:core", NAPI_AUTO_LENGTH, &res_name);
	napi_async_init(env, NULL, res_name, &c->async_ctx);
	napi_create_reference(env, argv[0], 1, &c->callback);

	c->tl = pw_thread_loop_new("audioloop-pw", NULL);
	if (c->tl == NULL)
		goto fail_errno;
	c->context = pw_context_new(pw_thread_loop_get_loop(c->tl),
				    pw_properties_new(PW_KEY_APP_NAME, app_name, NULL), 0);
	if (c->context == NULL)
		goto fail_errno;
	if (pw_thread_loop_start(c->tl) < 0)
		goto fail_errno;

	pw_thread_loop_lock(c->tl);
	c->core = pw_context_connect(c->context, NULL, 0);
	if (c->core == NULL) {
		int err = errno ? errno : ECONNREFUSED;
		pw_thread_loop_unlock(c->tl);
		core_close(c);
		return make_int(env, -err);
	}
	atomic_store(&c->connected, 1);
	pw_core_add_listener(c->core, &c->core_listener, &core_events, c);
	c->registry = pw_core_get_registry(c->core, PW_VERSION_REGISTRY, 0);
	pw_registry_add_listener(c->registry, &c->registry_listener, &registry_events, c);
	pw_thread_loop_unlock(c->tl);

	napi_add_env_cleanup_hook(env, cleanup_hook, c);

	struct core_handle *h = calloc(1, sizeof(*h));
	h->c = c;
	napi_value ext;
	NAPI_CALL(env, napi_create_external(env, h, core_handle_finalize, NULL, &ext));
	return ext;

fail_errno: {
	int err = errno ? errno : EIO;
	core_close(c);
	return make_int(env, -err);
}
}

/* coreClose(core) */
static napi_value js_core_close(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct core_handle *h = NULL;
	napi_get_value_external(env, argv[0], (void **)&h);
	if (h && h->c) {
		napi_remove_env_cleanup_hook(env, cleanup_hook, h->c);
		core_close(h->c);
		h->c = NULL;
	}
	return NULL;
}

/*
 * streamCreate(core, opts, callback(kind, a, b, text)) -> external | negative errno
 * opts: { direction: 'sink'|'source', name, description, format, rate, channels,
 *         ringBytes, wakeBytes, latencyFrames?, props?: { [key]: string } }
 */
static napi_value js_stream_create(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_core *c = get_core(env, argv[0]);
	if (c == NULL || c->closed)
		return make_int(env, -EBADF);
	if (!atomic_load(&c->connected))
		return make_int(env, -EPIPE);

	char direction[16] = "", name[128] = "", desc[256] = "", fmt_name[16] = "";
	uint32_t rate = 0, channels = 0, ring_bytes = 1 << 17, wake_bytes = 0, latency = 0;
	get_str(env, argv[1], "direction", direction, sizeof(direction));
	get_str(env, argv[1], "name", name, sizeof(name));
	if (!get_str(env, argv[1], "description", desc, sizeof(desc)))
		snprintf(desc, sizeof(desc), "%s", name);
	get_str(env, argv[1], "format", fmt_name, sizeof(fmt_name));
	get_u32(env, argv[1], "rate", &rate);
	get_u32(env, argv[1], "channels", &channels);
	get_u32(env, argv[1], "ringBytes", &ring_bytes);
	get_u32(env, argv[1], "wakeBytes", &wake_bytes);
	get_u32(env, argv[1], "latencyFrames", &latency);

	const struct format_info *fmt = find_format(fmt_name);
	bool is_sink = strcmp(direction, "sink") == 0;
	if (fmt == NULL || (!is_sink && strcmp(direction, "source") != 0) || name[0] == '\0' ||
	    rate < 8000 || rate > 192000 || channels < 1 || channels > 8 || ring_bytes < 1024 ||
	    ring_bytes > (1u << 28))
		return make_int(env, -EINVAL);

	struct al_stream *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return make_int(env, -ENOMEM);
	uint32_t size = 1024;
	while (size < ring_bytes)
		size <<= 1;
	s->ring.data = malloc(size);
	if (s->ring.data == NULL) {
		free(s);
		return make_int(env, -ENOMEM);
	}
	s->ring.size = size;
	s->ring.mask = size - 1;
	s->core = c;
	s->is_sink = is_sink;
	s->fmt = fmt;
	s->rate = rate;
	s->channels = channels;
	s->stride = fmt->bytes * channels;
	s->wake_bytes = wake_bytes ? SPA_MIN(wake_bytes, size) : size / 8;
	s->id = c->next_stream_id++;
	atomic_store(&s->node_id, SPA_ID_INVALID);
	atomic_store(&s->state, PW_STREAM_STATE_UNCONNECTED);
	napi_create_reference(env, argv[2], 1, &s->callback);

	char rate_str[32], latency_str[64];
	snprintf(rate_str, sizeof(rate_str), "1/%u", rate);
	struct pw_properties *props = pw_properties_new(
		PW_KEY_MEDIA_TYPE, "Audio",
		PW_KEY_MEDIA_CATEGORY, is_sink ? "Capture" : "Playback",
		PW_KEY_MEDIA_CLASS, is_sink ? "Audio/Sink" : "Audio/Source",
		PW_KEY_NODE_NAME, name,
		PW_KEY_NODE_DESCRIPTION, desc,
		PW_KEY_MEDIA_NAME, desc,
		PW_KEY_NODE_RATE, rate_str,
		"node.virtual", "true",
		"audioloop.instance", name,
		NULL);
	/* A sink runs from creation on, like an open device: a node that only
	 * starts when the first client links loses that client's first quantum
	 * (the client runs one cycle before we do). Client presence comes from
	 * the link count instead of the stream state. */
	if (is_sink)
		pw_properties_set(props, "node.always-process", "true");
	/* extra node properties: opts.props = { key: 'value', ... } */
	napi_value extra;
	bool has_extra = false;
	napi_valuetype extra_type = napi_undefined;
	if (napi_has_named_property(env, argv[1], "props", &has_extra) == napi_ok && has_extra &&
	    napi_get_named_property(env, argv[1], "props", &extra) == napi_ok &&
	    napi_typeof(env, extra, &extra_type) == napi_ok && extra_type == napi_object) {
		napi_value keys;
		uint32_t nkeys = 0;
		napi_get_property_names(env, extra, &keys);
		napi_get_array_length(env, keys, &nkeys);
		for (uint32_t i = 0; i < nkeys; i++) {
			napi_value k, v;
			char key[128], val[256];
			size_t n;
			napi_get_element(env, keys, i, &k);
			if (napi_get_value_string_utf8(env, k, key, sizeof(key), &n) != napi_ok)
				continue;
			napi_get_property(env, extra, k, &v);
			if (napi_get_value_string_utf8(env, v, val, sizeof(val), &n) != napi_ok)
				continue;
			pw_properties_set(props, key, val);
		}
	}
	if (latency > 0) {
		snprintf(latency_str, sizeof(latency_str), "%u/%u", latency, rate);
		pw_properties_set(props, PW_KEY_NODE_LATENCY, latency_str);
	}

	uint8_t pod_buf[1024];
	struct spa_pod_builder builder = SPA_POD_BUILDER_INIT(pod_buf, sizeof(pod_buf));
	struct spa_audio_info_raw raw = { .format = fmt->spa_format, .rate = rate, .channels = channels };
	set_positions(raw.position, channels);
	const struct spa_pod *params[1];
	params[0] = spa_format_audio_raw_build(&builder, SPA_PARAM_EnumFormat, &raw);

	pw_thread_loop_lock(c->tl);
	s->stream = pw_stream_new(c->core, name, props);
	int res = -errno;
	if (s->stream == NULL) {
		pw_thread_loop_unlock(c->tl);
		napi_delete_reference(env, s->callback);
		free(s->ring.data);
		free(s);
		return make_int(env, res ? res : -ENOMEM);
	}
	pw_stream_add_listener(s->stream, &s->listener, &stream_events, s);
	res = pw_stream_connect(s->stream, is_sink ? PW_DIRECTION_INPUT : PW_DIRECTION_OUTPUT, PW_ID_ANY,
				PW_STREAM_FLAG_MAP_BUFFERS | PW_STREAM_FLAG_RT_PROCESS, params, 1);
	if (res < 0) {
		pw_stream_destroy(s->stream);
		pw_thread_loop_unlock(c->tl);
		napi_delete_reference(env, s->callback);
		free(s->ring.data);
		free(s);
		return make_int(env, res);
	}
	spa_list_append(&c->streams, &s->link);
	pw_thread_loop_unlock(c->tl);

	c->live_streams++;
	update_async_ref(c);

	struct stream_handle *h = calloc(1, sizeof(*h));
	h->s = s;
	napi_value ext;
	NAPI_CALL(env, napi_create_external(env, h, stream_handle_finalize, NULL, &ext));
	return ext;
}

/* streamRead(stream, buffer) -> bytes copied (>= 0) | negative errno. Sink only. */
static napi_value js_stream_read(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_stream *s = get_stream(env, argv[0]);
	if (s == NULL || s->destroyed)
		return make_int(env, -EBADF);
	if (!s->is_sink)
		return make_int(env, -EINVAL);
	void *data;
	size_t len;
	NAPI_CALL(env, napi_get_buffer_info(env, argv[1], &data, &len));
	len -= len % s->stride;
	if (len > UINT32_MAX)
		len = UINT32_MAX - (UINT32_MAX % s->stride);
	uint32_t n = ring_read(&s->ring, data, (uint32_t)len);
	return make_int(env, n);
}

/* streamWrite(stream, buffer) -> bytes accepted (>= 0) | negative errno. Source only. */
static napi_value js_stream_write(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_stream *s = get_stream(env, argv[0]);
	if (s == NULL || s->destroyed)
		return make_int(env, -EBADF);
	if (s->is_sink)
		return make_int(env, -EINVAL);
	void *data;
	size_t len;
	NAPI_CALL(env, napi_get_buffer_info(env, argv[1], &data, &len));
	if (len > UINT32_MAX)
		len = UINT32_MAX;
	/* only whole frames enter the ring, so the rt side never splits one */
	uint32_t space = s->ring.size - ring_fill(&s->ring);
	uint32_t n = SPA_MIN((uint32_t)len, space);
	n -= n % s->stride;
	n = ring_write(&s->ring, data, n);
	if (n > 0)
		atomic_store_explicit(&s->primed, 1, memory_order_release);
	if (n < len - len % s->stride)
		atomic_store_explicit(&s->want_space, 1, memory_order_release);
	return make_int(env, n);
}

/* streamStats(stream) -> { state, nodeId, fill, size, frames, xruns, xrunBytes, cycles, quantum, links } */
static napi_value js_stream_stats(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], obj;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_stream *s = get_stream(env, argv[0]);
	if (s == NULL)
		return make_int(env, -EBADF);
	NAPI_CALL(env, napi_create_object(env, &obj));
	uint32_t node_id = atomic_load(&s->node_id);
	set_prop(env, obj, "state", make_str(env, s->destroyed ? "destroyed" : state_name(atomic_load(&s->state))));
	set_prop(env, obj, "nodeId", make_int(env, node_id == SPA_ID_INVALID ? -1 : (int64_t)node_id));
	set_prop(env, obj, "fill", make_int(env, ring_fill(&s->ring)));
	set_prop(env, obj, "size", make_int(env, s->ring.size));
	set_prop(env, obj, "frames", make_double(env, (double)atomic_load(&s->frames_rt)));
	set_prop(env, obj, "xruns", make_double(env, (double)atomic_load(&s->xruns)));
	set_prop(env, obj, "xrunBytes", make_double(env, (double)atomic_load(&s->xrun_bytes)));
	set_prop(env, obj, "cycles", make_double(env, (double)atomic_load(&s->cycles)));
	set_prop(env, obj, "quantum", make_int(env, atomic_load(&s->last_quantum)));
	set_prop(env, obj, "links", make_int(env, atomic_load(&s->links)));
	return obj;
}

/* streamDestroy(stream): idempotent */
static napi_value js_stream_destroy(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_stream *s = get_stream(env, argv[0]);
	if (s != NULL && !s->core->closed)
		stream_destroy(s);
	return NULL;
}

/* [js, loop lock held] the properties of a mirrored node, shared by coreNodes and corePeers */
static void set_node_props(napi_env env, napi_value o, const struct al_node_info *n)
{
	set_prop(env, o, "name", make_str(env, n->name));
	set_prop(env, o, "mediaClass", make_str(env, n->media_class));
	set_prop(env, o, "appName", make_str(env, n->app_name));
	set_prop(env, o, "mediaName", make_str(env, n->media_name));
	set_prop(env, o, "pid", make_int(env, n->pid));
	set_prop(env, o, "clientId", make_int(env, n->client_id == SPA_ID_INVALID ? -1 : (int64_t)n->client_id));
}

/* corePeers(core, nodeId) -> [{ linkId, nodeId, name, mediaClass, appName, mediaName, pid, clientId }] */
static napi_value js_core_peers(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], arr;
	uint32_t node_id = SPA_ID_INVALID, idx = 0;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_core *c = get_core(env, argv[0]);
	NAPI_CALL(env, napi_create_array(env, &arr));
	if (c == NULL || c->closed)
		return arr;
	napi_get_value_uint32(env, argv[1], &node_id);
	pw_thread_loop_lock(c->tl);
	struct al_link_info *l;
	spa_list_for_each(l, &c->links, link) {
		uint32_t peer;
		if (l->in_node == node_id)
			peer = l->out_node;
		else if (l->out_node == node_id)
			peer = l->in_node;
		else
			continue;
		napi_value o;
		napi_create_object(env, &o);
		set_prop(env, o, "linkId", make_int(env, l->id));
		set_prop(env, o, "nodeId", make_int(env, peer));
		struct al_node_info *n;
		spa_list_for_each(n, &c->nodes, link) {
			if (n->id != peer)
				continue;
			set_node_props(env, o, n);
			break;
		}
		napi_set_element(env, arr, idx++, o);
	}
	pw_thread_loop_unlock(c->tl);
	return arr;
}

/* [js] coreNodes(core) -> [{ id, name, mediaClass, appName, mediaName, pid, clientId }] */
static napi_value js_core_nodes(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], arr;
	uint32_t idx = 0;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_core *c = get_core(env, argv[0]);
	NAPI_CALL(env, napi_create_array(env, &arr));
	if (c == NULL || c->closed)
		return arr;
	pw_thread_loop_lock(c->tl);
	struct al_node_info *n;
	spa_list_for_each(n, &c->nodes, link) {
		napi_value o;
		napi_create_object(env, &o);
		set_prop(env, o, "id", make_int(env, n->id));
		set_node_props(env, o, n);
		napi_set_element(env, arr, idx++, o);
	}
	pw_thread_loop_unlock(c->tl);
	return arr;
}

/* coreClients(core) -> [{ id, appName, pid, secPid }]: the mirrored Client globals;
 * pid is application.process.id from the client's info (-1 until known) */
static napi_value js_core_clients(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], arr;
	uint32_t idx = 0;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_core *c = get_core(env, argv[0]);
	NAPI_CALL(env, napi_create_array(env, &arr));
	if (c == NULL || c->closed)
		return arr;
	pw_thread_loop_lock(c->tl);
	struct al_client_info *ci;
	spa_list_for_each(ci, &c->clients, link) {
		napi_value o;
		napi_create_object(env, &o);
		set_prop(env, o, "id", make_int(env, ci->id));
		set_prop(env, o, "appName", make_str(env, ci->app_name));
		set_prop(env, o, "pid", make_int(env, ci->pid));
		set_prop(env, o, "secPid", make_int(env, ci->sec_pid));
		napi_set_element(env, arr, idx++, o);
	}
	pw_thread_loop_unlock(c->tl);
	return arr;
}

/* coreDestroyGlobal(core, id) -> 0 | negative errno: asks the server to destroy an object */
static napi_value js_core_destroy_global(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	uint32_t id = SPA_ID_INVALID;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_core *c = get_core(env, argv[0]);
	if (c == NULL || c->closed || c->registry == NULL)
		return make_int(env, -EBADF);
	napi_get_value_uint32(env, argv[1], &id);
	pw_thread_loop_lock(c->tl);
	int res = pw_registry_destroy(c->registry, id);
	pw_thread_loop_unlock(c->tl);
	return make_int(env, res < 0 ? res : 0);
}

/* coreConnected(core) -> boolean */
static napi_value js_core_connected(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], r;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_core *c = get_core(env, argv[0]);
	napi_get_boolean(env, c != NULL && !c->closed && atomic_load(&c->connected), &r);
	return r;
}

/* versions() -> { compiled, linked } */
static napi_value js_versions(napi_env env, napi_callback_info info)
{
	napi_value obj;
	NAPI_CALL(env, napi_create_object(env, &obj));
	set_prop(env, obj, "compiled", make_str(env, pw_get_headers_version()));
	set_prop(env, obj, "linked", make_str(env, pw_get_library_version()));
	return obj;
}

/* strerror(errno) -> string */
static napi_value js_strerror(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	int32_t e = 0;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	napi_get_value_int32(env, argv[0], &e);
	return make_str(env, spa_strerror(e < 0 ? e : -e));
}

static napi_value init(napi_env env, napi_value exports)
{
	static bool pw_inited = false;
	if (!pw_inited) {
		pw_init(NULL, NULL);
		pw_inited = true;
	}
	napi_property_descriptor desc[] = {
		{ "coreOpen", NULL, js_core_open, NULL, NULL, NULL, napi_default, NULL },
		{ "coreClose", NULL, js_core_close, NULL, NULL, NULL, napi_default, NULL },
		{ "coreConnected", NULL, js_core_connected, NULL, NULL, NULL, napi_default, NULL },
		{ "corePeers", NULL, js_core_peers, NULL, NULL, NULL, napi_default, NULL },
		{ "coreNodes", NULL, js_core_nodes, NULL, NULL, NULL, napi_default, NULL },
		{ "coreClients", NULL, js_core_clients, NULL, NULL, NULL, napi_default, NULL },
		{ "coreDestroyGlobal", NULL, js_core_destroy_global, NULL, NULL, NULL, napi_default, NULL },
		{ "streamCreate", NULL, js_stream_create, NULL, NULL, NULL, napi_default, NULL },
		{ "streamRead", NULL, js_stream_read, NULL, NULL, NULL, napi_default, NULL },
		{ "streamWrite", NULL, js_stream_write, NULL, NULL, NULL, napi_default, NULL },
		{ "streamStats", NULL, js_stream_stats, NULL, NULL, NULL, napi_default, NULL },
		{ "streamDestroy", NULL, js_stream_destroy, NULL, NULL, NULL, napi_default, NULL },
		{ "versions", NULL, js_versions, NULL, NULL, NULL, napi_default, NULL },
		{ "strerror", NULL, js_strerror, NULL, NULL, NULL, napi_default, NULL },
	};
	NAPI_CALL(env, napi_define_properties(env, exports, SPA_N_ELEMENTS(desc), desc));
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
