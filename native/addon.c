/*
 * N-API glue ([js] only): handles for cores, streams and cables, argument
 * checking, JS objects.  Every function returns a negative errno instead of
 * throwing (the TS layer maps them to coded errors, src/errors.ts).
 *
 * Handles own their native memory and free it in their finalizers; close
 * and destroy calls are idempotent and may come in any order (see
 * backend.h for the parent/child rule).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <node_api.h>

#include "backend.h"
#include "cable.h"
#include "format.h"
#include "host.h"

#define NAPI_CALL(env, call)                                                                     \
	do {                                                                                     \
		napi_status status__ = (call);                                                   \
		if (status__ != napi_ok) {                                                       \
			const napi_extended_error_info *info__ = NULL;                           \
			napi_get_last_error_info((env), &info__);                                \
			bool pending__;                                                          \
			napi_is_exception_pending((env), &pending__);                            \
			if (!pending__)                                                          \
				napi_throw_error((env), NULL,                                    \
						 info__ && info__->error_message ? info__->error_message \
										 : "N-API call failed"); \
			return NULL;                                                             \
		}                                                                                \
	} while (0)

/* ------------------------------------------------------------------------ */
/* value helpers                                                             */

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

static napi_value make_bool(napi_env env, bool v)
{
	napi_value r;
	napi_get_boolean(env, v, &r);
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

static bool get_named(napi_env env, napi_value obj, const char *key, napi_valuetype want, napi_value *out)
{
	bool has = false;
	napi_valuetype t;
	if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has)
		return false;
	if (napi_get_named_property(env, obj, key, out) != napi_ok)
		return false;
	return napi_typeof(env, *out, &t) == napi_ok && t == want;
}

/* reads an optional uint32 property; returns false if absent */
static bool get_u32(napi_env env, napi_value obj, const char *key, uint32_t *out)
{
	napi_value v;
	return get_named(env, obj, key, napi_number, &v) && napi_get_value_uint32(env, v, out) == napi_ok;
}

/* reads an optional string property into buf; returns false if absent */
static bool get_str(napi_env env, napi_value obj, const char *key, char *buf, size_t len)
{
	napi_value v;
	size_t n;
	return get_named(env, obj, key, napi_string, &v) && napi_get_value_string_utf8(env, v, buf, len, &n) == napi_ok;
}

/* a string argument into buf, or "" for null/undefined; false if neither */
static bool arg_str(napi_env env, napi_value v, char *buf, size_t len)
{
	napi_valuetype t;
	size_t n;
	buf[0] = '\0';
	if (napi_typeof(env, v, &t) != napi_ok)
		return false;
	if (t == napi_null || t == napi_undefined)
		return true;
	return t == napi_string && napi_get_value_string_utf8(env, v, buf, len, &n) == napi_ok;
}

static bool is_function(napi_env env, napi_value v)
{
	napi_valuetype t;
	return v != NULL && napi_typeof(env, v, &t) == napi_ok && t == napi_function;
}

/* ------------------------------------------------------------------------ */
/* handles                                                                   */

struct core_handle {
	struct al_core core;
};

struct stream_handle {
	struct al_stream s;
	struct al_cable *cable;   /* one reference: the ring stays readable after destroy */
};

struct cable_handle {
	struct al_cable *c;
};

static void core_finalize(napi_env env, void *data, void *hint)
{
	struct core_handle *h = data;
	struct al_host *host = h->core.host;
	al_core_close(&h->core);
	free(h);
	al_host_unref(host);
}

static void stream_finalize(napi_env env, void *data, void *hint)
{
	struct stream_handle *h = data;
	struct al_host *host = h->cable->host;
	al_stream_destroy(&h->s);
	al_target_remove(host, &h->s.target);
	al_cable_unref(h->cable);
	free(h);
}

static void cable_finalize(napi_env env, void *data, void *hint)
{
	struct cable_handle *h = data;
	al_cable_unref(h->c);
	free(h);
}

/* each kind of handle is type-tagged, so one passed for another is EBADF, not a crash */
static const napi_type_tag core_tag = { 0x6175646c6f6f7001ull, 0x636f7265ull };
static const napi_type_tag stream_tag = { 0x6175646c6f6f7002ull, 0x73747265616dull };
static const napi_type_tag cable_tag = { 0x6175646c6f6f7003ull, 0x6361626c65ull };

static napi_value wrap(napi_env env, void *h, napi_finalize fin, const napi_type_tag *tag)
{
	napi_value ext;
	if (napi_create_external(env, h, fin, NULL, &ext) != napi_ok)
		return NULL;
	napi_type_tag_object(env, ext, tag);
	return ext;
}

static void *get_external(napi_env env, napi_value v, const napi_type_tag *tag)
{
	void *p = NULL;
	napi_valuetype t;
	bool ok = false;
	if (v == NULL || napi_typeof(env, v, &t) != napi_ok || t != napi_external)
		return NULL;
	if (napi_check_object_type_tag(env, v, tag, &ok) != napi_ok || !ok)
		return NULL;
	if (napi_get_value_external(env, v, &p) != napi_ok)
		return NULL;
	return p;
}

static struct al_core *get_core(napi_env env, napi_value v)
{
	struct core_handle *h = get_external(env, v, &core_tag);
	return h ? &h->core : NULL;
}

static struct stream_handle *get_stream(napi_env env, napi_value v)
{
	return get_external(env, v, &stream_tag);
}

static struct al_cable *get_cable(napi_env env, napi_value v)
{
	struct cable_handle *h = get_external(env, v, &cable_tag);
	return h ? h->c : NULL;
}

/* ------------------------------------------------------------------------ */
/* event delivery [js]                                                       */

static void deliver_core(struct al_target *t, const struct al_event *ev)
{
	struct al_core *c = al_container_of(t, struct al_core, target);
	napi_env env = c->host->env;
	if (ev == NULL)
		return;
	napi_value argv[4];
	argv[0] = make_str(env, ev->type == AL_EV_CORE_ERROR ? "error" : "graph");
	argv[1] = make_int(env, ev->a);
	argv[2] = make_int(env, ev->b);
	argv[3] = make_str(env, ev->text[0] ? ev->text : NULL);
	al_target_call(c->host, t, 4, argv);
}

static void deliver_stream(struct al_target *t, const struct al_event *ev)
{
	struct al_stream *s = al_container_of(t, struct al_stream, target);
	if (s->core == NULL)
		return;
	struct al_host *host = s->core->host;
	napi_env env = host->env;
	napi_value argv[4];
	if (ev == NULL) {
		argv[0] = make_str(env, "data");
		al_target_call(host, t, 1, argv);
		return;
	}
	switch (ev->type) {
	case AL_EV_STATE:
		argv[0] = make_str(env, "state");
		argv[1] = make_str(env, s->core->ops->state_name((int)ev->b));
		argv[2] = make_int(env, ev->a);
		break;
	case AL_EV_LINKS:
		argv[0] = make_str(env, "links");
		argv[1] = make_int(env, ev->a);
		argv[2] = make_int(env, ev->b);
		break;
	case AL_EV_FORMAT:
		argv[0] = make_str(env, "format");
		argv[1] = make_int(env, ev->a);
		argv[2] = make_int(env, ev->b);
		break;
	default:
		return;
	}
	argv[3] = make_str(env, ev->text[0] ? ev->text : NULL);
	al_target_call(host, t, 4, argv);
}

static const char *const cable_event_names[] = {
	[AL_CABLE_FIRST] = "first", [AL_CABLE_EOF] = "eof", [AL_CABLE_DRAINED] = "drained",
	[AL_CABLE_FINISHED] = "finished", [AL_CABLE_ERROR] = "error",
};

static void deliver_cable(struct al_target *t, const struct al_event *ev)
{
	struct al_cable *c = al_container_of(t, struct al_cable, target);
	if (ev == NULL || ev->type != AL_EV_CABLE || ev->a < AL_CABLE_FIRST || ev->a > AL_CABLE_ERROR)
		return;
	napi_env env = c->host->env;
	napi_value argv[2] = { make_str(env, cable_event_names[ev->a]), make_int(env, ev->b) };
	al_target_call(c->host, t, 2, argv);
}

/* ------------------------------------------------------------------------ */
/* cores                                                                     */

/* coreOpen(callback(kind, a, b, text), appName?, backend?) -> external | negative errno
 * backend: "pipewire" (default) or "pulseaudio" */
static napi_value js_core_open(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3] = { NULL, NULL, NULL };
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	char app_name[128] = "audioloop", backend[32] = "pipewire";
	if (argc >= 2 && !arg_str(env, argv[1], app_name, sizeof(app_name)))
		return make_int(env, -EINVAL);
	if (argc >= 3 && !arg_str(env, argv[2], backend, sizeof(backend)))
		return make_int(env, -EINVAL);
	const struct al_backend_ops *ops;
	if (backend[0] == '\0' || strcmp(backend, "pipewire") == 0)
		ops = &al_pipewire_ops;
	else if (strcmp(backend, "pulseaudio") == 0) {
		ops = al_pulseaudio_ops_load();
		if (ops == NULL)
			return make_int(env, -ENOENT); /* backendLoadError() says why */
	} else
		return make_int(env, -EINVAL);
	if (app_name[0] == '\0')
		snprintf(app_name, sizeof(app_name), "audioloop");
	if (!is_function(env, argv[0]))
		return make_int(env, -EINVAL);
	struct al_host *host = al_host_get(env);
	if (host == NULL)
		return make_int(env, -ENOMEM);
	struct core_handle *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return make_int(env, -ENOMEM);
	al_host_ref(host);
	h->core.host = host;
	al_list_init(&h->core.target.link);
	al_target_add(host, &h->core.target, argv[0], deliver_core);
	int res = al_core_open(&h->core, host, ops, app_name);
	if (res < 0) {
		al_target_remove(host, &h->core.target);
		free(h);
		al_host_unref(host);
		return make_int(env, res);
	}
	return wrap(env, h, core_finalize, &core_tag);
}

/* coreClose(core): idempotent; destroys the core's streams first */
static napi_value js_core_close(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_core *c = get_core(env, argv[0]);
	if (c)
		al_core_close(c);
	return NULL;
}

/* coreConnected(core) -> boolean */
static napi_value js_core_connected(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_core *c = get_core(env, argv[0]);
	return make_bool(env, c != NULL && !c->closed && atomic_load(&c->connected));
}

/* [js, locked] the properties of a mirrored node, shared by coreNodes and corePeers */
static void set_node_props(napi_env env, napi_value o, const struct al_node_info *n)
{
	set_prop(env, o, "name", make_str(env, n->name));
	set_prop(env, o, "mediaClass", make_str(env, n->media_class));
	set_prop(env, o, "appName", make_str(env, n->app_name));
	set_prop(env, o, "mediaName", make_str(env, n->media_name));
	set_prop(env, o, "pid", make_int(env, n->pid));
	set_prop(env, o, "clientId", make_int(env, n->client_id == AL_ID_NONE ? -1 : (int64_t)n->client_id));
	if (n->latency > 0)
		set_prop(env, o, "latency", make_double(env, n->latency));
}

/* corePeers(core, nodeId) -> [{ linkId, nodeId, name, mediaClass, appName, mediaName, pid, clientId }] */
static napi_value js_core_peers(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], arr;
	uint32_t node_id = AL_ID_NONE, idx = 0;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_core *c = get_core(env, argv[0]);
	NAPI_CALL(env, napi_create_array(env, &arr));
	if (c == NULL || c->closed || argc < 2)
		return arr;
	napi_get_value_uint32(env, argv[1], &node_id);
	c->ops->lock(c);
	struct al_link_info *l;
	al_list_for_each(l, &c->links, struct al_link_info, link) {
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
		set_prop(env, o, "active", make_bool(env, l->active));
		struct al_node_info *n;
		al_list_for_each(n, &c->nodes, struct al_node_info, link) {
			if (n->id != peer)
				continue;
			set_node_props(env, o, n);
			break;
		}
		napi_set_element(env, arr, idx++, o);
	}
	c->ops->unlock(c);
	return arr;
}

/* coreNodes(core) -> [{ id, name, mediaClass, appName, mediaName, pid, clientId }] */
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
	c->ops->lock(c);
	struct al_node_info *n;
	al_list_for_each(n, &c->nodes, struct al_node_info, link) {
		napi_value o;
		napi_create_object(env, &o);
		set_prop(env, o, "id", make_int(env, n->id));
		set_node_props(env, o, n);
		napi_set_element(env, arr, idx++, o);
	}
	c->ops->unlock(c);
	return arr;
}

/* coreClients(core) -> [{ id, appName, pid, secPid }] */
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
	c->ops->lock(c);
	struct al_client_info *ci;
	al_list_for_each(ci, &c->clients, struct al_client_info, link) {
		napi_value o;
		napi_create_object(env, &o);
		set_prop(env, o, "id", make_int(env, ci->id));
		set_prop(env, o, "appName", make_str(env, ci->app_name));
		set_prop(env, o, "pid", make_int(env, ci->pid));
		set_prop(env, o, "secPid", make_int(env, ci->sec_pid));
		napi_set_element(env, arr, idx++, o);
	}
	c->ops->unlock(c);
	return arr;
}

/* coreDestroyGlobal(core, id) -> 0 | negative errno */
static napi_value js_core_destroy_global(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	uint32_t id = AL_ID_NONE;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_core *c = get_core(env, argv[0]);
	if (c == NULL || c->closed || argc < 2)
		return make_int(env, -EBADF);
	napi_get_value_uint32(env, argv[1], &id);
	return make_int(env, c->ops->destroy_global(c, id));
}

/* ------------------------------------------------------------------------ */
/* cables                                                                    */

/* reads { direction, format, rate, channels, ringBytes, wakeBytes } */
static int cable_params(napi_env env, napi_value opts, struct al_cable_params *p)
{
	char direction[16] = "", fmt_name[16] = "";
	uint32_t ring_bytes = 1 << 17, wake_bytes = 0;
	memset(p, 0, sizeof(*p));
	get_str(env, opts, "direction", direction, sizeof(direction));
	get_str(env, opts, "format", fmt_name, sizeof(fmt_name));
	get_u32(env, opts, "rate", &p->rate);
	get_u32(env, opts, "channels", &p->channels);
	get_u32(env, opts, "ringBytes", &ring_bytes);
	get_u32(env, opts, "wakeBytes", &wake_bytes);
	p->fmt = al_format_find(fmt_name);
	p->is_sink = strcmp(direction, "sink") == 0;
	if (p->fmt == NULL || (!p->is_sink && strcmp(direction, "source") != 0) || p->rate < 8000 ||
	    p->rate > 192000 || p->channels < 1 || p->channels > AL_MAX_CHANNELS || ring_bytes < 1024 ||
	    ring_bytes > (1u << 28))
		return -EINVAL;
	p->ring_bytes = ring_bytes;
	p->wake_bytes = wake_bytes;
	return 0;
}

/* cableCreate(opts, callback(kind, err)) -> external | negative errno
 * opts: { direction: 'sink'|'source', format, rate, channels, ringBytes, wakeBytes } */
static napi_value js_cable_create(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2] = { NULL, NULL };
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_cable_params p;
	if (argc < 2 || !is_function(env, argv[1]))
		return make_int(env, -EINVAL);
	int res = cable_params(env, argv[0], &p);
	if (res < 0)
		return make_int(env, res);
	struct al_host *host = al_host_get(env);
	if (host == NULL)
		return make_int(env, -ENOMEM);
	struct cable_handle *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return make_int(env, -ENOMEM);
	h->c = al_cable_new(host, &p);
	if (h->c == NULL) {
		free(h);
		return make_int(env, -ENOMEM);
	}
	al_target_add(host, &h->c->target, argv[1], deliver_cable);
	return wrap(env, h, cable_finalize, &cable_tag);
}

/* cablePlug(cable, fd, rest: Buffer | null, holdBytes) -> 0 | negative errno */
static napi_value js_cable_plug(napi_env env, napi_callback_info info)
{
	size_t argc = 4;
	napi_value argv[4];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_cable *c = argc >= 4 ? get_cable(env, argv[0]) : NULL;
	int32_t fd = -1;
	uint32_t hold = 0;
	if (c == NULL)
		return make_int(env, -EBADF);
	if (napi_get_value_int32(env, argv[1], &fd) != napi_ok || fd < 0)
		return make_int(env, -EBADF);
	napi_get_value_uint32(env, argv[3], &hold);
	void *rest = NULL;
	size_t len = 0;
	bool is_buf = false;
	napi_is_buffer(env, argv[2], &is_buf);
	if (is_buf)
		napi_get_buffer_info(env, argv[2], &rest, &len);
	if (len > UINT32_MAX)
		return make_int(env, -E2BIG);
	return make_int(env, al_cable_plug(c, fd, rest, (uint32_t)len, hold));
}

/* cableLine(cable, text) / cableStart(cable, line?) / cableFinish(cable, line?, drain) -> 0 | negative errno */
static napi_value cable_request(napi_env env, napi_callback_info info, int what)
{
	size_t argc = 3;
	napi_value argv[3] = { NULL, NULL, NULL };
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_cable *c = argc >= 1 ? get_cable(env, argv[0]) : NULL;
	char line[AL_CTL_BYTES];
	if (c == NULL)
		return make_int(env, -EBADF);
	if (argc < 2 || !arg_str(env, argv[1], line, sizeof(line)))
		return make_int(env, -EINVAL);
	bool drain = false;
	if (argc >= 3)
		napi_get_value_bool(env, argv[2], &drain);
	int res = what == 0 ? al_cable_line(c, line) : what == 1 ? al_cable_start(c, line) : al_cable_finish(c, line, drain);
	return make_int(env, res);
}

static napi_value js_cable_line(napi_env env, napi_callback_info info)
{
	return cable_request(env, info, 0);
}

static napi_value js_cable_start(napi_env env, napi_callback_info info)
{
	return cable_request(env, info, 1);
}

static napi_value js_cable_finish(napi_env env, napi_callback_info info)
{
	return cable_request(env, info, 2);
}

static napi_value cable_stats_object(napi_env env, struct al_cable *c, const char *state, int64_t node_id)
{
	struct al_cable_stats st;
	napi_value obj, levels;
	al_cable_stats(c, &st);
	NAPI_CALL(env, napi_create_object(env, &obj));
	if (state != NULL) {
		set_prop(env, obj, "state", make_str(env, state));
		set_prop(env, obj, "nodeId", make_int(env, node_id));
	}
	set_prop(env, obj, "fill", make_int(env, st.fill));
	set_prop(env, obj, "size", make_int(env, st.size));
	set_prop(env, obj, "frames", make_double(env, (double)st.frames));
	set_prop(env, obj, "xruns", make_double(env, (double)st.xruns));
	set_prop(env, obj, "xrunBytes", make_double(env, (double)st.xrun_bytes));
	set_prop(env, obj, "cycles", make_double(env, (double)st.cycles));
	set_prop(env, obj, "quantum", make_int(env, st.quantum));
	set_prop(env, obj, "links", make_int(env, st.links));
	set_prop(env, obj, "activeLinks", make_int(env, st.active_links));
	set_prop(env, obj, "fdBytes", make_double(env, (double)st.fd_bytes));
	set_prop(env, obj, "queued", make_int(env, st.queued));
	set_prop(env, obj, "consumed", make_double(env, (double)st.consumed));
	set_prop(env, obj, "fdOpen", make_bool(env, st.fd_open));
	set_prop(env, obj, "eof", make_bool(env, st.eof));
	set_prop(env, obj, "finished", make_bool(env, st.finished));
	set_prop(env, obj, "failed", make_bool(env, st.failed));
	NAPI_CALL(env, napi_create_array_with_length(env, c->channels, &levels));
	for (uint32_t i = 0; i < c->channels; i++)
		napi_set_element(env, levels, i, make_double(env, st.levels[i]));
	set_prop(env, obj, "levels", levels);
	return obj;
}

/* cableStats(cable) -> { fill, size, frames, xruns, xrunBytes, cycles, quantum, links, fdBytes, queued, consumed, fdOpen, eof, finished, failed, levels } */
static napi_value js_cable_stats(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_cable *c = get_cable(env, argv[0]);
	if (c == NULL)
		return make_int(env, -EBADF);
	return cable_stats_object(env, c, NULL, -1);
}

/* cableConsume(cable, bytes) -> bytes discarded now | negative errno (clock=1, see al_cable_consume) */
static napi_value js_cable_consume(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2] = { NULL, NULL };
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_cable *c = argc >= 2 ? get_cable(env, argv[0]) : NULL;
	uint32_t bytes = 0;
	if (c == NULL)
		return make_int(env, -EBADF);
	if (napi_get_value_uint32(env, argv[1], &bytes) != napi_ok)
		return make_int(env, -EINVAL);
	return make_int(env, al_cable_consume(c, bytes));
}

/* cablePeer(cable) -> 0 open | 1 EOF from the server | 2 closed/failed | negative errno */
static napi_value js_cable_peer(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_cable *c = get_cable(env, argv[0]);
	return make_int(env, c == NULL ? -EBADF : al_cable_peer(c));
}

/* cableClose(cable): idempotent; closes the server end, no more events */
static napi_value js_cable_close(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_cable *c = get_cable(env, argv[0]);
	if (c != NULL) {
		al_cable_close_fd(c);
		al_target_remove(c->host, &c->target);
	}
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* streams                                                                   */

/*
 * streamCreate(core, opts, callback(kind, a, b, text), cable?) -> external | negative errno
 * opts: { direction: 'sink'|'source', name, description, format, rate, channels,
 *         ringBytes, wakeBytes, latencyFrames?, props?: { [key]: string } }
 * Without a cable the stream gets a private one (JS mode: streamRead/streamWrite).
 */
static napi_value js_stream_create(napi_env env, napi_callback_info info)
{
	size_t argc = 4;
	napi_value argv[4] = { NULL, NULL, NULL, NULL };
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct al_core *c = argc >= 3 ? get_core(env, argv[0]) : NULL;
	if (c == NULL || c->closed)
		return make_int(env, -EBADF);
	if (!atomic_load(&c->connected))
		return make_int(env, -EPIPE);
	if (!is_function(env, argv[2]))
		return make_int(env, -EINVAL);

	struct al_cable_params cp;
	int res = cable_params(env, argv[1], &cp);
	char name[128] = "", desc[256] = "";
	uint32_t latency = 0;
	get_str(env, argv[1], "name", name, sizeof(name));
	if (!get_str(env, argv[1], "description", desc, sizeof(desc)))
		snprintf(desc, sizeof(desc), "%s", name);
	get_u32(env, argv[1], "latencyFrames", &latency);
	if (res < 0 || name[0] == '\0')
		return make_int(env, -EINVAL);

	struct al_cable *cable = NULL;
	napi_valuetype t = napi_undefined;
	if (argc >= 4 && argv[3] != NULL)
		napi_typeof(env, argv[3], &t);
	if (t != napi_undefined && t != napi_null) {
		cable = get_cable(env, argv[3]);
		if (cable == NULL)
			return make_int(env, -EBADF);
		if (cable->is_sink != cp.is_sink || cable->fmt != cp.fmt || cable->rate != cp.rate ||
		    cable->channels != cp.channels)
			return make_int(env, -EINVAL);
		al_cable_ref(cable);
	} else {
		cable = al_cable_new(c->host, &cp);
		if (cable == NULL)
			return make_int(env, -ENOMEM);
	}

	/* extra node properties: opts.props = { key: 'value', ... } */
	char (*kv)[2][256] = NULL;
	const char **props = NULL;
	uint32_t nprops = 0;
	napi_value extra;
	if (get_named(env, argv[1], "props", napi_object, &extra)) {
		napi_value keys;
		uint32_t nkeys = 0;
		napi_get_property_names(env, extra, &keys);
		napi_get_array_length(env, keys, &nkeys);
		kv = calloc(nkeys ? nkeys : 1, sizeof(*kv));
		props = calloc(nkeys ? nkeys * 2 : 1, sizeof(*props));
		for (uint32_t i = 0; kv && props && i < nkeys; i++) {
			napi_value k, v;
			size_t n;
			napi_get_element(env, keys, i, &k);
			if (napi_get_value_string_utf8(env, k, kv[nprops][0], 128, &n) != napi_ok)
				continue;
			napi_get_property(env, extra, k, &v);
			if (napi_get_value_string_utf8(env, v, kv[nprops][1], 256, &n) != napi_ok)
				continue;
			props[nprops * 2] = kv[nprops][0];
			props[nprops * 2 + 1] = kv[nprops][1];
			nprops++;
		}
	}
	struct al_stream_params sp = {
		.is_sink = cp.is_sink, .name = name, .description = desc, .latency_frames = latency,
		.n_props = nprops, .props = props,
	};

	struct stream_handle *h = calloc(1, sizeof(*h));
	if (h == NULL) {
		free(kv);
		free(props);
		al_cable_unref(cable);
		return make_int(env, -ENOMEM);
	}
	h->cable = cable;
	al_list_init(&h->s.target.link);
	al_target_add(c->host, &h->s.target, argv[2], deliver_stream);
	h->s.target.wake = &cable->wake;
	res = al_stream_create(&h->s, c, cable, &sp);
	free(kv);
	free(props);
	if (res < 0) {
		al_target_remove(c->host, &h->s.target);
		al_cable_unref(cable);
		free(h);
		return make_int(env, res);
	}
	return wrap(env, h, stream_finalize, &stream_tag);
}

/* streamRead(stream, buffer) -> bytes copied (>= 0) | negative errno. Sink only; works after destroy
 * (the cable keeps what was captured) until streamRelease. */
static napi_value js_stream_read(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct stream_handle *h = argc >= 2 ? get_stream(env, argv[0]) : NULL;
	if (h == NULL)
		return make_int(env, -EBADF);
	if (!h->cable->is_sink)
		return make_int(env, -EINVAL);
	void *data;
	size_t len;
	NAPI_CALL(env, napi_get_buffer_info(env, argv[1], &data, &len));
	if (len > UINT32_MAX)
		len = UINT32_MAX;
	return make_int(env, al_cable_read(h->cable, data, (uint32_t)len));
}

/* streamWrite(stream, buffer) -> bytes accepted (>= 0) | negative errno. Source only. */
static napi_value js_stream_write(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct stream_handle *h = argc >= 2 ? get_stream(env, argv[0]) : NULL;
	if (h == NULL || h->s.core == NULL)
		return make_int(env, -EBADF);
	if (h->cable->is_sink)
		return make_int(env, -EINVAL);
	void *data;
	size_t len;
	NAPI_CALL(env, napi_get_buffer_info(env, argv[1], &data, &len));
	if (len > UINT32_MAX)
		len = UINT32_MAX;
	return make_int(env, al_cable_write(h->cable, data, (uint32_t)len));
}

/* streamStats(stream) -> { state, nodeId, fill, size, frames, xruns, xrunBytes, cycles, quantum, links, ... } */
static napi_value js_stream_stats(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct stream_handle *h = get_stream(env, argv[0]);
	if (h == NULL)
		return make_int(env, -EBADF);
	struct al_stream *s = &h->s;
	uint32_t node_id = atomic_load(&s->node_id);
	const char *state = s->core ? s->core->ops->state_name(atomic_load(&s->state)) : "destroyed";
	return cable_stats_object(env, h->cable, state, s->core && node_id != AL_ID_NONE ? (int64_t)node_id : -1);
}

/* [js] streamKeepSilence(stream, on): a sink keeps the silence it hears while
 * no client's data flows (clock=1 after START); 0 or -errno */
static napi_value js_stream_keep_silence(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct stream_handle *h = argc >= 2 ? get_stream(env, argv[0]) : NULL;
	bool on = false;
	if (h == NULL || napi_get_value_bool(env, argv[1], &on) != napi_ok)
		return make_int(env, -EBADF);
	al_cable_keep_silence(h->cable, on);
	return make_int(env, 0);
}

/* [js] streamWakeAfter(stream, frames): one 'data' wake-up once the node has
 * moved `frames` more frames (0 cancels); 0 or -errno */
static napi_value js_stream_wake_after(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct stream_handle *h = get_stream(env, argv[0]);
	double frames = 0;
	if (h == NULL || argc < 2 || napi_get_value_double(env, argv[1], &frames) != napi_ok)
		return make_int(env, -EBADF);
	if (!(frames >= 0))
		return make_int(env, -EINVAL);
	al_cable_wake_after(h->cable, (uint64_t)frames);
	return make_int(env, 0);
}

/* streamDestroy(stream): idempotent; removes the node, the cable stays */
static napi_value js_stream_destroy(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	struct stream_handle *h = get_stream(env, argv[0]);
	if (h != NULL)
		al_stream_destroy(&h->s);
	return NULL;
}

/* ------------------------------------------------------------------------ */

/* versions() -> { compiled, linked } */
static napi_value js_versions(napi_env env, napi_callback_info info)
{
	napi_value obj;
	NAPI_CALL(env, napi_create_object(env, &obj));
	set_prop(env, obj, "compiled", make_str(env, al_pipewire_ops.version_compiled()));
	set_prop(env, obj, "linked", make_str(env, al_pipewire_ops.version_linked()));
	return obj;
}

/* backendLoadError() -> string | null: why coreOpen(..., "pulseaudio") could not load audioloop_pulse.node */
static napi_value js_backend_load_error(napi_env env, napi_callback_info info)
{
	const char *e = al_pulseaudio_load_error();
	if (e[0] == '\0') {
		napi_value n;
		NAPI_CALL(env, napi_get_null(env, &n));
		return n;
	}
	return make_str(env, e);
}

/* strerror(errno) -> string */
static napi_value js_strerror(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	int32_t e = 0;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	napi_get_value_int32(env, argv[0], &e);
	return make_str(env, al_pipewire_ops.strerror(e < 0 ? e : -e));
}

static napi_value init(napi_env env, napi_value exports)
{
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
		{ "streamWakeAfter", NULL, js_stream_wake_after, NULL, NULL, NULL, napi_default, NULL },
		{ "streamKeepSilence", NULL, js_stream_keep_silence, NULL, NULL, NULL, napi_default, NULL },
		{ "streamDestroy", NULL, js_stream_destroy, NULL, NULL, NULL, napi_default, NULL },
		{ "cableCreate", NULL, js_cable_create, NULL, NULL, NULL, napi_default, NULL },
		{ "cablePlug", NULL, js_cable_plug, NULL, NULL, NULL, napi_default, NULL },
		{ "cableLine", NULL, js_cable_line, NULL, NULL, NULL, napi_default, NULL },
		{ "cableStart", NULL, js_cable_start, NULL, NULL, NULL, napi_default, NULL },
		{ "cableFinish", NULL, js_cable_finish, NULL, NULL, NULL, napi_default, NULL },
		{ "cableStats", NULL, js_cable_stats, NULL, NULL, NULL, napi_default, NULL },
		{ "cableClose", NULL, js_cable_close, NULL, NULL, NULL, napi_default, NULL },
		{ "cablePeer", NULL, js_cable_peer, NULL, NULL, NULL, napi_default, NULL },
		{ "cableConsume", NULL, js_cable_consume, NULL, NULL, NULL, napi_default, NULL },
		{ "versions", NULL, js_versions, NULL, NULL, NULL, napi_default, NULL },
		{ "strerror", NULL, js_strerror, NULL, NULL, NULL, napi_default, NULL },
		{ "backendLoadError", NULL, js_backend_load_error, NULL, NULL, NULL, napi_default, NULL },
	};
	NAPI_CALL(env, napi_define_properties(env, exports, sizeof(desc) / sizeof(desc[0]), desc));
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
