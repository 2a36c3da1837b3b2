/*
 * The PulseAudio backend: a pa_threaded_mainloop ([loop]) with one context,
 * a subscription mirror of the server's devices and streams, and per loop:
 *
 *   read loop  (is_sink):  module-null-sink `NAME` with the server's exact
 *              format; our record stream on `NAME.monitor` (same format, so
 *              no conversion: bit-exact) feeds the cable.  norewinds=1: with
 *              rewinds a newly attached sink-input's first block (10 ms
 *              measured) never reached the monitor;
 *   write loop (!is_sink): module-null-sink `NAME-writer` our playback
 *              stream plays into, and module-remap-source `NAME` on its
 *              monitor: an ordinary source clients record from.
 *
 * There is no realtime thread: the read/write callbacks run in [loop] and
 * play the [rt] role (they only call the cable's rt functions).
 *
 * Ids: PulseAudio numbers sinks, sources, sink-inputs, source-outputs and
 * clients separately, so the mirror encodes the kind in the top byte.
 * A sink-input is a node linked to its sink; a source-output a node linked
 * from its source.
 *
 * Modules carry `audioloop.pid=PID` in their device properties: at open the
 * modules of a daemon that is gone (SIGKILL) are unloaded.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pulse/pulseaudio.h>

#include "backend.h"

enum { K_SINK = 1, K_SOURCE, K_SINK_INPUT, K_SOURCE_OUTPUT, K_CLIENT };
#define ENC(k, i) (((uint32_t)(k) << 24) | ((i) & 0xffffffu))
#define KIND(id) ((id) >> 24)
#define IDX(id) ((id) & 0xffffffu)

/* stream states: the same codes and words as PipeWire's pw_stream_state */
enum { ST_ERROR = -1, ST_UNCONNECTED = 0, ST_CONNECTING = 1, ST_PAUSED = 2, ST_STREAMING = 3 };

struct pa_core_impl {
	struct al_core *c;
	pa_threaded_mainloop *ml;
	pa_context *ctx;
	bool lost;
};

struct pa_stream_impl {
	struct al_stream *s;
	struct pa_core_impl *pc;
	pa_stream *st;
	uint32_t mod_sink, mod_remap;  /* module indexes, PA_INVALID_INDEX when none */
	uint32_t stride;
	bool ready;
	bool corked;                   /* a write loop's playback stream: corked while no client records */
};

/* ------------------------------------------------------------------------ */
/* helpers [loop] or [js, locked]                                            */

/* [js, locked] waits for op to finish (the callbacks signal) */
static void wait_op(struct pa_core_impl *pc, pa_operation *op)
{
	if (op == NULL)
		return;
	while (pa_operation_get_state(op) == PA_OPERATION_RUNNING)
		pa_threaded_mainloop_wait(pc->ml);
	pa_operation_unref(op);
}

static void drop_op(pa_operation *op)
{
	if (op != NULL)
		pa_operation_unref(op);
}

static void signal_cb(pa_context *ctx, int success, void *data)
{
	struct pa_core_impl *pc = data;
	pa_threaded_mainloop_signal(pc->ml, 0);
}

static char *dup_str(const char *s)
{
	return s ? strdup(s) : NULL;
}

static char *prop_dup(pa_proplist *pl, const char *key)
{
	const char *v = pl ? pa_proplist_gets(pl, key) : NULL;
	return v ? strdup(v) : NULL;
}

static int32_t prop_pid(pa_proplist *pl)
{
	const char *v = pl ? pa_proplist_gets(pl, PA_PROP_APPLICATION_PROCESS_ID) : NULL;
	return v && atoi(v) > 0 ? atoi(v) : -1;
}

static struct al_node_info *find_node(struct al_core *c, uint32_t id)
{
	struct al_node_info *n;
	al_list_for_each(n, &c->nodes, struct al_node_info, link)
		if (n->id == id)
			return n;
	return NULL;
}

static struct al_link_info *find_link(struct al_core *c, uint32_t id)
{
	struct al_link_info *l;
	al_list_for_each(l, &c->links, struct al_link_info, link)
		if (l->id == id)
			return l;
	return NULL;
}

/*
 * [loop] link counts, and a write loop's client state: streaming while a
 * client records (an uncorked source-output on our source).  While none
 * does, our playback stream is corked, as PipeWire does not run a source
 * node nobody takes data from: the ring keeps what the server wrote
 * instead of playing it to a corked client that would drop it.
 */
static void update_links(struct pa_core_impl *pc)
{
	struct al_core *c = pc->c;
	al_mirror_update_links(c);
	struct al_stream *s;
	al_list_for_each(s, &c->streams, struct al_stream, link) {
		struct pa_stream_impl *si = s->impl;
		if (si == NULL || s->cable == NULL || s->is_sink || !si->ready || si->st == NULL)
			continue;
		bool run = atomic_load(&s->cable->active_links) > 0;
		int want = run ? ST_STREAMING : ST_PAUSED;
		if (si->corked == run) {
			si->corked = !run;
			drop_op(pa_stream_cork(si->st, !run, NULL, NULL));
		}
		if (atomic_exchange(&s->state, want) != want)
			al_host_push(c->host, AL_EV_STATE, s->target.id, atomic_load(&s->node_id), want, NULL);
	}
}

/* [loop] a node's fields, replacing the old ones */
static struct al_node_info *upsert_node(struct al_core *c, uint32_t id, bool *added)
{
	struct al_node_info *n = find_node(c, id);
	*added = false;
	if (n == NULL) {
		n = calloc(1, sizeof(*n));
		if (n == NULL)
			return NULL;
		n->id = id;
		al_list_append(&c->nodes, &n->link);
		*added = true;
	}
	free(n->name);
	free(n->media_class);
	free(n->app_name);
	free(n->media_name);
	n->name = n->media_class = n->app_name = n->media_name = NULL;
	n->pid = -1;
	n->client_id = AL_ID_NONE;
	return n;
}

/* [loop] a client stream's link to our device; active: data flows (not corked) */
static void upsert_link(struct al_core *c, uint32_t id, uint32_t out, uint32_t in, bool active)
{
	struct al_link_info *l = find_link(c, id);
	if (l == NULL) {
		l = calloc(1, sizeof(*l));
		if (l == NULL)
			return;
		l->id = id;
		al_list_append(&c->links, &l->link);
	}
	l->out_node = out;
	l->in_node = in;
	l->active = active;
}

static void remove_id(struct pa_core_impl *pc, uint32_t id)
{
	struct al_core *c = pc->c;
	struct al_link_info *l = find_link(c, id);
	if (l != NULL) {
		al_list_remove(&l->link);
		free(l);
	}
	struct al_node_info *n = find_node(c, id);
	if (n != NULL) {
		al_mirror_free_node(n);
		update_links(pc);
		al_host_push(c->host, AL_EV_GRAPH, c->target.id, 0, id, "node");
		return;
	}
	struct al_client_info *ci;
	al_list_for_each(ci, &c->clients, struct al_client_info, link) {
		if (ci->id == id) {
			al_mirror_free_client(ci);
			al_host_push(c->host, AL_EV_GRAPH, c->target.id, 0, id, "client");
			return;
		}
	}
}

/* ------------------------------------------------------------------------ */
/* introspection callbacks [loop]                                            */

static void sink_cb(pa_context *ctx, const pa_sink_info *i, int eol, void *data)
{
	struct pa_core_impl *pc = data;
	if (eol || i == NULL) {
		pa_threaded_mainloop_signal(pc->ml, 0);
		return;
	}
	bool added;
	struct al_node_info *n = upsert_node(pc->c, ENC(K_SINK, i->index), &added);
	if (n == NULL)
		return;
	n->name = dup_str(i->name);
	n->media_class = strdup("Audio/Sink");
	n->media_name = dup_str(i->description);
	al_host_push(pc->c->host, AL_EV_GRAPH, pc->c->target.id, 1, n->id, "node");
}

static void source_cb(pa_context *ctx, const pa_source_info *i, int eol, void *data)
{
	struct pa_core_impl *pc = data;
	if (eol || i == NULL) {
		pa_threaded_mainloop_signal(pc->ml, 0);
		return;
	}
	bool added;
	struct al_node_info *n = upsert_node(pc->c, ENC(K_SOURCE, i->index), &added);
	if (n == NULL)
		return;
	n->name = dup_str(i->name);
	n->media_class = strdup(i->monitor_of_sink != PA_INVALID_INDEX ? "Audio/Source/Monitor" : "Audio/Source");
	n->media_name = dup_str(i->description);
	al_host_push(pc->c->host, AL_EV_GRAPH, pc->c->target.id, 1, n->id, "node");
}

static void stream_node(struct pa_core_impl *pc, uint32_t id, const char *klass, const char *name,
			pa_proplist *pl, uint32_t client)
{
	bool added;
	struct al_node_info *n = upsert_node(pc->c, id, &added);
	if (n == NULL)
		return;
	n->media_class = strdup(klass);
	n->name = prop_dup(pl, PA_PROP_APPLICATION_PROCESS_BINARY);
	if (n->name == NULL)
		n->name = dup_str(name);
	n->app_name = prop_dup(pl, PA_PROP_APPLICATION_NAME);
	n->media_name = dup_str(name);
	n->pid = prop_pid(pl);
	n->client_id = client == PA_INVALID_INDEX ? AL_ID_NONE : ENC(K_CLIENT, client);
}

static void sink_input_cb(pa_context *ctx, const pa_sink_input_info *i, int eol, void *data)
{
	struct pa_core_impl *pc = data;
	if (eol || i == NULL) {
		pa_threaded_mainloop_signal(pc->ml, 0);
		return;
	}
	uint32_t id = ENC(K_SINK_INPUT, i->index);
	stream_node(pc, id, "Stream/Output/Audio", i->name, i->proplist, i->client);
	upsert_link(pc->c, id, id, ENC(K_SINK, i->sink), !i->corked);
	update_links(pc);
	al_host_push(pc->c->host, AL_EV_GRAPH, pc->c->target.id, 1, id, "node");
}

static void source_output_cb(pa_context *ctx, const pa_source_output_info *i, int eol, void *data)
{
	struct pa_core_impl *pc = data;
	if (eol || i == NULL) {
		pa_threaded_mainloop_signal(pc->ml, 0);
		return;
	}
	uint32_t id = ENC(K_SOURCE_OUTPUT, i->index);
	stream_node(pc, id, "Stream/Input/Audio", i->name, i->proplist, i->client);
	upsert_link(pc->c, id, ENC(K_SOURCE, i->source), id, !i->corked);
	update_links(pc);
	al_host_push(pc->c->host, AL_EV_GRAPH, pc->c->target.id, 1, id, "node");
}

static void client_cb(pa_context *ctx, const pa_client_info *i, int eol, void *data)
{
	struct pa_core_impl *pc = data;
	if (eol || i == NULL) {
		pa_threaded_mainloop_signal(pc->ml, 0);
		return;
	}
	struct al_core *c = pc->c;
	uint32_t id = ENC(K_CLIENT, i->index);
	struct al_client_info *ci = NULL, *x;
	al_list_for_each(x, &c->clients, struct al_client_info, link)
		if (x->id == id)
			ci = x;
	if (ci == NULL) {
		ci = calloc(1, sizeof(*ci));
		if (ci == NULL)
			return;
		ci->id = id;
		ci->sec_pid = -1;
		al_list_append(&c->clients, &ci->link);
	}
	free(ci->app_name);
	ci->app_name = prop_dup(i->proplist, PA_PROP_APPLICATION_NAME);
	if (ci->app_name == NULL)
		ci->app_name = dup_str(i->name);
	ci->pid = prop_pid(i->proplist);
	al_host_push(c->host, AL_EV_GRAPH, c->target.id, 1, id, "client");
}

static void subscribe_cb(pa_context *ctx, pa_subscription_event_type_t t, uint32_t idx, void *data)
{
	struct pa_core_impl *pc = data;
	unsigned facility = t & PA_SUBSCRIPTION_EVENT_FACILITY_MASK;
	unsigned type = t & PA_SUBSCRIPTION_EVENT_TYPE_MASK;
	int kind;
	switch (facility) {
	case PA_SUBSCRIPTION_EVENT_SINK: kind = K_SINK; break;
	case PA_SUBSCRIPTION_EVENT_SOURCE: kind = K_SOURCE; break;
	case PA_SUBSCRIPTION_EVENT_SINK_INPUT: kind = K_SINK_INPUT; break;
	case PA_SUBSCRIPTION_EVENT_SOURCE_OUTPUT: kind = K_SOURCE_OUTPUT; break;
	case PA_SUBSCRIPTION_EVENT_CLIENT: kind = K_CLIENT; break;
	default: return;
	}
	if (type == PA_SUBSCRIPTION_EVENT_REMOVE) {
		remove_id(pc, ENC(kind, idx));
		return;
	}
	switch (kind) {
	case K_SINK: drop_op(pa_context_get_sink_info_by_index(ctx, idx, sink_cb, pc)); break;
	case K_SOURCE: drop_op(pa_context_get_source_info_by_index(ctx, idx, source_cb, pc)); break;
	case K_SINK_INPUT: drop_op(pa_context_get_sink_input_info(ctx, idx, sink_input_cb, pc)); break;
	case K_SOURCE_OUTPUT: drop_op(pa_context_get_source_output_info(ctx, idx, source_output_cb, pc)); break;
	case K_CLIENT: drop_op(pa_context_get_client_info(ctx, idx, client_cb, pc)); break;
	}
}

static void context_state_cb(pa_context *ctx, void *data)
{
	struct pa_core_impl *pc = data;
	pa_context_state_t st = pa_context_get_state(ctx);
	if ((st == PA_CONTEXT_FAILED || st == PA_CONTEXT_TERMINATED) && atomic_load(&pc->c->connected) && !pc->lost) {
		pc->lost = true;
		atomic_store(&pc->c->connected, 0);
		al_host_push(pc->c->host, AL_EV_CORE_ERROR, pc->c->target.id, 0, -EPIPE,
			     pa_strerror(pa_context_errno(ctx)));
	}
	pa_threaded_mainloop_signal(pc->ml, 0);
}

/* ------------------------------------------------------------------------ */
/* stale modules [js, locked]                                                */

struct stale {
	struct pa_core_impl *pc;
	uint32_t idx[64], n;           /* modules of dead daemons */
	uint32_t sinks[64], n_sinks;   /* their sinks (null sinks) */
	uint32_t sources[128], n_sources; /* their sources (monitors, remap sources) */
	uint32_t kill[64], n_kill;     /* client streams on those devices */
	bool kill_is_input[64];
};

static bool has_idx(const uint32_t *v, uint32_t n, uint32_t x)
{
	for (uint32_t k = 0; k < n; k++)
		if (v[k] == x)
			return true;
	return false;
}

static void module_cb(pa_context *ctx, const pa_module_info *i, int eol, void *data)
{
	struct stale *st = data;
	if (eol || i == NULL) {
		pa_threaded_mainloop_signal(st->pc->ml, 0);
		return;
	}
	const char *a = i->argument ? strstr(i->argument, "audioloop.pid=") : NULL;
	if (a == NULL || st->n >= 64)
		return;
	int pid = atoi(a + strlen("audioloop.pid="));
	if (pid <= 0 || pid == getpid())
		return;
	if (kill(pid, 0) == 0 || errno != ESRCH)
		return;
	st->idx[st->n++] = i->index;
}

static void stale_sink_cb(pa_context *ctx, const pa_sink_info *i, int eol, void *data)
{
	struct stale *st = data;
	if (eol || i == NULL) {
		pa_threaded_mainloop_signal(st->pc->ml, 0);
		return;
	}
	if (has_idx(st->idx, st->n, i->owner_module) && st->n_sinks < 64)
		st->sinks[st->n_sinks++] = i->index;
}

static void stale_source_cb(pa_context *ctx, const pa_source_info *i, int eol, void *data)
{
	struct stale *st = data;
	if (eol || i == NULL) {
		pa_threaded_mainloop_signal(st->pc->ml, 0);
		return;
	}
	if ((has_idx(st->idx, st->n, i->owner_module) || has_idx(st->sinks, st->n_sinks, i->monitor_of_sink)) &&
	    st->n_sources < 128)
		st->sources[st->n_sources++] = i->index;
}

static void stale_input_cb(pa_context *ctx, const pa_sink_input_info *i, int eol, void *data)
{
	struct stale *st = data;
	if (eol || i == NULL) {
		pa_threaded_mainloop_signal(st->pc->ml, 0);
		return;
	}
	/* a client's stream (not one of the modules' own) on a stale sink */
	if (has_idx(st->sinks, st->n_sinks, i->sink) && !has_idx(st->idx, st->n, i->owner_module) && st->n_kill < 64) {
		st->kill_is_input[st->n_kill] = true;
		st->kill[st->n_kill++] = i->index;
	}
}

static void stale_output_cb(pa_context *ctx, const pa_source_output_info *i, int eol, void *data)
{
	struct stale *st = data;
	if (eol || i == NULL) {
		pa_threaded_mainloop_signal(st->pc->ml, 0);
		return;
	}
	if (has_idx(st->sources, st->n_sources, i->source) && !has_idx(st->idx, st->n, i->owner_module) &&
	    st->n_kill < 64) {
		st->kill_is_input[st->n_kill] = false;
		st->kill[st->n_kill++] = i->index;
	}
}

/*
 * [js, locked] the modules of a daemon that died (SIGKILL) without
 * unloading them: the client streams still on their devices are killed
 * first (unloading alone would let PulseAudio rescue them to another
 * device), then the modules are unloaded.
 */
static void remove_stale_modules(struct pa_core_impl *pc)
{
	struct stale st = { .pc = pc };
	wait_op(pc, pa_context_get_module_info_list(pc->ctx, module_cb, &st));
	if (st.n == 0)
		return;
	wait_op(pc, pa_context_get_sink_info_list(pc->ctx, stale_sink_cb, &st));
	wait_op(pc, pa_context_get_source_info_list(pc->ctx, stale_source_cb, &st));
	wait_op(pc, pa_context_get_sink_input_info_list(pc->ctx, stale_input_cb, &st));
	wait_op(pc, pa_context_get_source_output_info_list(pc->ctx, stale_output_cb, &st));
	for (uint32_t k = 0; k < st.n_kill; k++)
		wait_op(pc, st.kill_is_input[k] ? pa_context_kill_sink_input(pc->ctx, st.kill[k], signal_cb, pc)
						: pa_context_kill_source_output(pc->ctx, st.kill[k], signal_cb, pc));
	/* remap sources were loaded after their sinks: unload in reverse */
	for (uint32_t k = st.n; k-- > 0;)
		wait_op(pc, pa_context_unload_module(pc->ctx, st.idx[k], signal_cb, pc));
}

/* ------------------------------------------------------------------------ */
/* stream callbacks                                                          */

/* [loop, the rt role] read loop: what the monitor recorded goes into the cable */
static void read_cb(pa_stream *st, size_t nbytes, void *data)
{
	struct pa_stream_impl *si = data;
	struct al_cable *cable = si->s->cable;
	uint32_t frames = 0;
	bool dropped = false;
	const void *p;
	size_t n;
	while (cable != NULL && pa_stream_readable_size(st) > 0) {
		if (pa_stream_peek(st, &p, &n) < 0 || n == 0)
			break;
		if (p != NULL) {
			uint32_t m = (uint32_t)(n - n % si->stride);
			if (al_cable_rt_push(cable, p, m, &dropped))
				frames += m / si->stride;
		}
		pa_stream_drop(st);
	}
	if (cable != NULL)
		al_cable_rt_push_done(cable, frames, dropped);
}

/* [loop, the rt role] write loop: the cable fills what the server asks for (ring data, then silence) */
static void write_cb(pa_stream *st, size_t nbytes, void *data)
{
	struct pa_stream_impl *si = data;
	struct al_cable *cable = si->s->cable;
	if (cable == NULL)
		return;
	void *buf;
	size_t n = nbytes;
	if (pa_stream_begin_write(st, &buf, &n) < 0 || buf == NULL)
		return;
	if (n > nbytes)
		n = nbytes;
	n -= n % si->stride;
	al_cable_rt_pull(cable, buf, (uint32_t)n);
	pa_stream_write(st, buf, n, NULL, 0, PA_SEEK_RELATIVE);
}

static void stream_state_cb(pa_stream *st, void *data)
{
	struct pa_stream_impl *si = data;
	struct al_stream *s = si->s;
	struct al_host *h = si->pc->c->host;
	switch (pa_stream_get_state(st)) {
	case PA_STREAM_READY: {
		si->ready = true;
		int code = s->is_sink ? ST_STREAMING : (atomic_load(&s->cable->active_links) > 0 ? ST_STREAMING : ST_PAUSED);
		atomic_store(&s->state, code);
		const pa_sample_spec *ss = pa_stream_get_sample_spec(st);
		al_host_push(h, AL_EV_FORMAT, s->target.id, ss->rate, ss->channels, NULL);
		al_host_push(h, AL_EV_STATE, s->target.id, atomic_load(&s->node_id), code, NULL);
		break;
	}
	case PA_STREAM_FAILED:
		atomic_store(&s->state, ST_ERROR);
		al_host_push(h, AL_EV_STATE, s->target.id, atomic_load(&s->node_id), ST_ERROR,
			     pa_strerror(pa_context_errno(si->pc->ctx)));
		break;
	default:
		break;
	}
	pa_threaded_mainloop_signal(si->pc->ml, 0);
}

/* ------------------------------------------------------------------------ */
/* ops [js]                                                                  */

static void pa_close_op(struct al_core *c);

static int pa_open_op(struct al_core *c, const char *app_name)
{
	struct pa_core_impl *pc = calloc(1, sizeof(*pc));
	if (pc == NULL)
		return -ENOMEM;
	pc->c = c;
	c->impl = pc;
	pc->ml = pa_threaded_mainloop_new();
	if (pc->ml == NULL)
		goto fail;
	pa_threaded_mainloop_set_name(pc->ml, "audioloop-pa");
	pa_proplist *pl = pa_proplist_new();
	pa_proplist_sets(pl, PA_PROP_APPLICATION_NAME, app_name);
	pa_proplist_sets(pl, PA_PROP_APPLICATION_ID, "audioloop");
	pc->ctx = pa_context_new_with_proplist(pa_threaded_mainloop_get_api(pc->ml), app_name, pl);
	pa_proplist_free(pl);
	if (pc->ctx == NULL)
		goto fail;
	pa_context_set_state_callback(pc->ctx, context_state_cb, pc);
	if (pa_threaded_mainloop_start(pc->ml) < 0)
		goto fail;
	pa_threaded_mainloop_lock(pc->ml);
	if (pa_context_connect(pc->ctx, NULL, PA_CONTEXT_NOAUTOSPAWN, NULL) < 0) {
		pa_threaded_mainloop_unlock(pc->ml);
		pa_close_op(c);
		return -ECONNREFUSED;
	}
	for (;;) {
		pa_context_state_t st = pa_context_get_state(pc->ctx);
		if (st == PA_CONTEXT_READY)
			break;
		if (!PA_CONTEXT_IS_GOOD(st)) {
			pa_threaded_mainloop_unlock(pc->ml);
			pa_close_op(c);
			return -ECONNREFUSED;
		}
		pa_threaded_mainloop_wait(pc->ml);
	}
	atomic_store(&c->connected, 1);
	remove_stale_modules(pc);
	pa_context_set_subscribe_callback(pc->ctx, subscribe_cb, pc);
	wait_op(pc, pa_context_subscribe(pc->ctx,
					 PA_SUBSCRIPTION_MASK_SINK | PA_SUBSCRIPTION_MASK_SOURCE |
						 PA_SUBSCRIPTION_MASK_SINK_INPUT | PA_SUBSCRIPTION_MASK_SOURCE_OUTPUT |
						 PA_SUBSCRIPTION_MASK_CLIENT,
					 signal_cb, pc));
	wait_op(pc, pa_context_get_client_info_list(pc->ctx, client_cb, pc));
	wait_op(pc, pa_context_get_sink_info_list(pc->ctx, sink_cb, pc));
	wait_op(pc, pa_context_get_source_info_list(pc->ctx, source_cb, pc));
	wait_op(pc, pa_context_get_sink_input_info_list(pc->ctx, sink_input_cb, pc));
	wait_op(pc, pa_context_get_source_output_info_list(pc->ctx, source_output_cb, pc));
	pa_threaded_mainloop_unlock(pc->ml);
	return 0;

fail:
	pa_close_op(c);
	return -ENOMEM;
}

static void pa_close_op(struct al_core *c)
{
	struct pa_core_impl *pc = c->impl;
	if (pc == NULL)
		return;
	if (pc->ml) {
		pa_threaded_mainloop_lock(pc->ml);
		if (pc->ctx) {
			pa_context_set_subscribe_callback(pc->ctx, NULL, NULL);
			pa_context_set_state_callback(pc->ctx, NULL, NULL);
			pa_context_disconnect(pc->ctx);
			pa_context_unref(pc->ctx);
			pc->ctx = NULL;
		}
		pa_threaded_mainloop_unlock(pc->ml);
		pa_threaded_mainloop_stop(pc->ml);
		pa_threaded_mainloop_free(pc->ml);
	}
	free(pc);
	c->impl = NULL;
}

static void pa_lock_op(struct al_core *c)
{
	struct pa_core_impl *pc = c->impl;
	if (pc && pc->ml)
		pa_threaded_mainloop_lock(pc->ml);
}

static void pa_unlock_op(struct al_core *c)
{
	struct pa_core_impl *pc = c->impl;
	if (pc && pc->ml)
		pa_threaded_mainloop_unlock(pc->ml);
}

static const char *pa_sample_name(enum al_sample s)
{
	switch (s) {
	case AL_U8: return "u8";
	case AL_S16LE: return "s16le";
	case AL_S24LE: return "s24le";
	case AL_S32LE: return "s32le";
	case AL_F32LE: return "float32le";
	}
	return "s16le";
}

static pa_sample_format_t pa_sample_of(enum al_sample s)
{
	switch (s) {
	case AL_U8: return PA_SAMPLE_U8;
	case AL_S16LE: return PA_SAMPLE_S16LE;
	case AL_S24LE: return PA_SAMPLE_S24LE;
	case AL_S32LE: return PA_SAMPLE_S32LE;
	case AL_F32LE: return PA_SAMPLE_FLOAT32LE;
	}
	return PA_SAMPLE_INVALID;
}

/* a description safe inside sink_properties='device.description="..."' */
static void clean_text(char *dst, size_t size, const char *src)
{
	size_t k = 0;
	for (; src && *src && k + 1 < size; src++)
		if (*src != '\'' && *src != '"' && *src != '\\')
			dst[k++] = *src;
	dst[k] = '\0';
}

struct load_result {
	struct pa_core_impl *pc;
	uint32_t idx;
};

static void load_cb(pa_context *ctx, uint32_t idx, void *data)
{
	struct load_result *r = data;
	r->idx = idx;
	pa_threaded_mainloop_signal(r->pc->ml, 0);
}

static uint32_t load_module(struct pa_core_impl *pc, const char *name, const char *args)
{
	struct load_result r = { pc, PA_INVALID_INDEX };
	wait_op(pc, pa_context_load_module(pc->ctx, name, args, load_cb, &r));
	return r.idx;
}

struct index_result {
	struct pa_core_impl *pc;
	uint32_t idx;
};

static void sink_index_cb(pa_context *ctx, const pa_sink_info *i, int eol, void *data)
{
	struct index_result *r = data;
	if (!eol && i != NULL)
		r->idx = i->index;
	pa_threaded_mainloop_signal(r->pc->ml, 0);
}

static void source_index_cb(pa_context *ctx, const pa_source_info *i, int eol, void *data)
{
	struct index_result *r = data;
	if (!eol && i != NULL)
		r->idx = i->index;
	pa_threaded_mainloop_signal(r->pc->ml, 0);
}

static void unload_modules(struct pa_core_impl *pc, struct pa_stream_impl *si)
{
	if (si->mod_remap != PA_INVALID_INDEX)
		wait_op(pc, pa_context_unload_module(pc->ctx, si->mod_remap, signal_cb, pc));
	if (si->mod_sink != PA_INVALID_INDEX)
		wait_op(pc, pa_context_unload_module(pc->ctx, si->mod_sink, signal_cb, pc));
	si->mod_remap = si->mod_sink = PA_INVALID_INDEX;
}

/* [js, locked] */
static int pa_stream_new_op(struct al_core *c, struct al_stream *s, const struct al_stream_params *p)
{
	struct pa_core_impl *pc = c->impl;
	struct al_cable *cable = s->cable;
	if (pc == NULL || pc->ctx == NULL || pc->lost)
		return -EPIPE;
	struct pa_stream_impl *si = calloc(1, sizeof(*si));
	if (si == NULL)
		return -ENOMEM;
	si->s = s;
	si->pc = pc;
	si->stride = cable->stride;
	si->mod_sink = si->mod_remap = PA_INVALID_INDEX;

	char desc[256], args[1024], dev[160];
	clean_text(desc, sizeof(desc), p->description ? p->description : p->name);
	const char *fmt = pa_sample_name(cable->fmt->sample);
	int res = -EIO;

	if (p->is_sink) {
		snprintf(args, sizeof(args),
			 "sink_name=%s format=%s rate=%u channels=%u norewinds=1 "
			 "sink_properties='device.description=\"%s\" audioloop.instance=%s audioloop.pid=%d'",
			 p->name, fmt, cable->rate, cable->channels, desc, p->name, (int)getpid());
		si->mod_sink = load_module(pc, "module-null-sink", args);
		if (si->mod_sink == PA_INVALID_INDEX) {
			res = -EBUSY;
			goto fail;
		}
		struct index_result r = { pc, PA_INVALID_INDEX };
		wait_op(pc, pa_context_get_sink_info_by_name(pc->ctx, p->name, sink_index_cb, &r));
		if (r.idx == PA_INVALID_INDEX)
			goto fail;
		atomic_store(&s->node_id, ENC(K_SINK, r.idx));
		snprintf(dev, sizeof(dev), "%s.monitor", p->name);
	} else {
		snprintf(dev, sizeof(dev), "%s-writer", p->name);
		snprintf(args, sizeof(args),
			 "sink_name=%s format=%s rate=%u channels=%u norewinds=1 "
			 "sink_properties='device.description=\"%s (audioloop internal)\" audioloop.instance=%s audioloop.pid=%d'",
			 dev, fmt, cable->rate, cable->channels, desc, p->name, (int)getpid());
		si->mod_sink = load_module(pc, "module-null-sink", args);
		if (si->mod_sink == PA_INVALID_INDEX) {
			res = -EBUSY;
			goto fail;
		}
		snprintf(args, sizeof(args),
			 "source_name=%s master=%s.monitor format=%s rate=%u channels=%u remix=no "
			 "source_properties='device.description=\"%s\" audioloop.instance=%s audioloop.pid=%d'",
			 p->name, dev, fmt, cable->rate, cable->channels, desc, p->name, (int)getpid());
		si->mod_remap = load_module(pc, "module-remap-source", args);
		if (si->mod_remap == PA_INVALID_INDEX) {
			res = -EBUSY;
			goto fail;
		}
		struct index_result r = { pc, PA_INVALID_INDEX };
		wait_op(pc, pa_context_get_source_info_by_name(pc->ctx, p->name, source_index_cb, &r));
		if (r.idx == PA_INVALID_INDEX)
			goto fail;
		atomic_store(&s->node_id, ENC(K_SOURCE, r.idx));
	}

	pa_sample_spec ss = { .format = pa_sample_of(cable->fmt->sample), .rate = cable->rate,
			      .channels = (uint8_t)cable->channels };
	/*
	 * the map module-null-sink gives a sink of N channels (modargs extend
	 * the default map with AUX channels beyond 6): the same one, so nothing
	 * is remapped; init_auto alone has no map for 7 or 8 channels
	 */
	pa_channel_map map;
	pa_channel_map_init_extend(&map, cable->channels, PA_CHANNEL_MAP_DEFAULT);
	pa_proplist *pl = pa_proplist_new();
	pa_proplist_sets(pl, PA_PROP_MEDIA_NAME, p->is_sink ? "audioloop capture" : "audioloop playback");
	pa_proplist_sets(pl, "audioloop.instance", p->name);
	si->st = pa_stream_new_with_proplist(pc->ctx, p->is_sink ? "audioloop capture" : "audioloop playback", &ss,
					     &map, pl);
	pa_proplist_free(pl);
	if (si->st == NULL)
		goto fail;
	s->impl = si;
	atomic_store(&s->state, ST_CONNECTING);
	pa_stream_set_state_callback(si->st, stream_state_cb, si);
	uint32_t frames = p->latency_frames > 0 ? p->latency_frames : cable->rate / 100; /* 10 ms */
	pa_buffer_attr attr = { .maxlength = (uint32_t)-1, .tlength = (uint32_t)-1, .prebuf = (uint32_t)-1,
				.minreq = (uint32_t)-1, .fragsize = (uint32_t)-1 };
	pa_stream_flags_t flags = PA_STREAM_DONT_MOVE | PA_STREAM_ADJUST_LATENCY | PA_STREAM_NO_REMAP_CHANNELS |
				  PA_STREAM_NO_REMIX_CHANNELS;
	int r;
	if (p->is_sink) {
		attr.fragsize = frames * si->stride;
		pa_stream_set_read_callback(si->st, read_cb, si);
		r = pa_stream_connect_record(si->st, dev, &attr, flags);
	} else {
		attr.tlength = 2 * frames * si->stride;
		attr.minreq = frames * si->stride / 2;
		attr.prebuf = 0;
		flags |= PA_STREAM_START_CORKED; /* update_links uncorks it once a client records */
		si->corked = true;
		pa_stream_set_write_callback(si->st, write_cb, si);
		r = pa_stream_connect_playback(si->st, dev, &attr, flags, NULL, NULL);
	}
	if (r < 0) {
		res = -EIO;
		goto fail_stream;
	}
	/* ready or failed: a node clients can see, with our stream on it */
	for (;;) {
		pa_stream_state_t st = pa_stream_get_state(si->st);
		if (st == PA_STREAM_READY)
			break;
		if (!PA_STREAM_IS_GOOD(st)) {
			res = -EIO;
			goto fail_stream;
		}
		pa_threaded_mainloop_wait(pc->ml);
	}
	update_links(pc);
	return 0;

fail_stream:
	pa_stream_set_state_callback(si->st, NULL, NULL);
	pa_stream_set_read_callback(si->st, NULL, NULL);
	pa_stream_set_write_callback(si->st, NULL, NULL);
	pa_stream_disconnect(si->st);
	pa_stream_unref(si->st);
	si->st = NULL;
	s->impl = NULL;
fail:
	unload_modules(pc, si);
	free(si);
	return res;
}

/*
 * [js] the client streams on our device are killed (never rescued to
 * another device), then our stream goes, then the modules.
 */
static void pa_stream_destroy_op(struct al_core *c, struct al_stream *s)
{
	struct pa_core_impl *pc = c->impl;
	struct pa_stream_impl *si = s->impl;
	if (si == NULL)
		return;
	if (pc != NULL && pc->ml != NULL) {
		pa_threaded_mainloop_lock(pc->ml);
		uint32_t node = atomic_load(&s->node_id);
		if (pc->ctx != NULL && !pc->lost && node != AL_ID_NONE) {
			struct al_link_info *l;
			pa_operation *last = NULL;
			al_list_for_each(l, &c->links, struct al_link_info, link) {
				uint32_t peer = s->is_sink ? (l->in_node == node ? l->out_node : AL_ID_NONE)
							   : (l->out_node == node ? l->in_node : AL_ID_NONE);
				if (peer == AL_ID_NONE)
					continue;
				drop_op(last);
				last = KIND(peer) == K_SINK_INPUT
					       ? pa_context_kill_sink_input(pc->ctx, IDX(peer), signal_cb, pc)
					       : pa_context_kill_source_output(pc->ctx, IDX(peer), signal_cb, pc);
			}
			wait_op(pc, last);
		}
		if (si->st != NULL) {
			pa_stream_set_state_callback(si->st, NULL, NULL);
			pa_stream_set_read_callback(si->st, NULL, NULL);
			pa_stream_set_write_callback(si->st, NULL, NULL);
			pa_stream_disconnect(si->st);
			pa_stream_unref(si->st);
			si->st = NULL;
		}
		if (pc->ctx != NULL && !pc->lost)
			unload_modules(pc, si);
		pa_threaded_mainloop_unlock(pc->ml);
	}
	free(si);
	s->impl = NULL;
}

static const char *pa_state_name_op(int code)
{
	switch (code) {
	case ST_ERROR: return "error";
	case ST_UNCONNECTED: return "unconnected";
	case ST_CONNECTING: return "connecting";
	case ST_PAUSED: return "paused";
	case ST_STREAMING: return "streaming";
	}
	return "unknown";
}

static int pa_destroy_global_op(struct al_core *c, uint32_t id)
{
	struct pa_core_impl *pc = c->impl;
	if (pc == NULL || pc->ctx == NULL)
		return -EBADF;
	pa_operation *op = NULL;
	pa_threaded_mainloop_lock(pc->ml);
	switch (KIND(id)) {
	case K_SINK_INPUT: op = pa_context_kill_sink_input(pc->ctx, IDX(id), NULL, NULL); break;
	case K_SOURCE_OUTPUT: op = pa_context_kill_source_output(pc->ctx, IDX(id), NULL, NULL); break;
	case K_CLIENT: op = pa_context_kill_client(pc->ctx, IDX(id), NULL, NULL); break;
	default: break;
	}
	int res = op ? 0 : -EINVAL;
	drop_op(op);
	pa_threaded_mainloop_unlock(pc->ml);
	return res;
}

static const char *pa_version_compiled(void)
{
	return pa_get_headers_version();
}

static const char *pa_version_linked(void)
{
	return pa_get_library_version();
}

static const char *pa_strerror_op(int err)
{
	return strerror(err < 0 ? -err : err);
}

const struct al_backend_ops al_pulseaudio_ops = {
	.name = "pulseaudio",
	.open = pa_open_op,
	.close = pa_close_op,
	.lock = pa_lock_op,
	.unlock = pa_unlock_op,
	.stream_new = pa_stream_new_op,
	.stream_destroy = pa_stream_destroy_op,
	.state_name = pa_state_name_op,
	.destroy_global = pa_destroy_global_op,
	.version_compiled = pa_version_compiled,
	.version_linked = pa_version_linked,
	.strerror = pa_strerror_op,
};
