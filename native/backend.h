/*
 * The seam between the addon and a sound server (aloop.c's loopback_ops).
 *
 * A core is one connection to a sound server; a stream is one node on it,
 * joined to a cable (cable.h): the backend's realtime callback only calls
 * al_cable_rt_push/_pull.  The core keeps a backend-neutral mirror of the
 * server's graph (nodes, links, clients) that the backend fills in its own
 * thread under its own lock (ops->lock).
 *
 * Lifetimes (better-sqlite3 style: the parent closes its children):
 *   closing a core destroys the backend part of every stream on it and
 *   detaches them (s->core = NULL); a stream destroyed later only lets go
 *   of its cable.  Core, stream and cable memory belongs to their JS
 *   handles and is freed by their finalizers, so any close order is safe.
 */
#ifndef AL_BACKEND_H
#define AL_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cable.h"
#include "host.h"
#include "list.h"

#define AL_ID_NONE UINT32_MAX

struct al_node_info {
	struct al_list link;
	uint32_t id;
	uint32_t client_id;   /* AL_ID_NONE when unknown */
	char *name, *media_class, *app_name, *media_name;
	int32_t pid;          /* -1 when unknown */
	/* the buffer the server keeps for this client stream (node.latency
	 * from the bound node's info, e.g. a pulse recorder's fragsize), in
	 * seconds; 0 when unknown.  Backends fill it for client streams only. */
	double latency;
	/* a bound client stream whose node is not running (yet, or paused):
	 * its links carry nothing to or from it even while they are "active".
	 * A link turns active before the peer's node has started (seen with
	 * pw-mon: pacork's links active, then its node running, under load
	 * some cycles later), so a playback cable that plays on the link
	 * state alone loses its first quanta. Also a pipewire-pulse stream
	 * that has not answered its client yet (it drops what reaches it).
	 * Set by the backend ([loop]); false for nodes whose state is not
	 * followed. */
	bool stopped;
	bool running;         /* [loop] pw: the node's state is running */
	bool pulse_pending;   /* [loop] pw: a pipewire-pulse stream that has not answered its client yet */
	void *impl;           /* backend data */
};

struct al_link_info {
	struct al_list link;
	uint32_t id;
	uint32_t out_node, in_node;
	bool active;          /* data flows (a corked client's links are paused) */
	void *impl;           /* backend data */
};

struct al_client_info {
	struct al_list link;
	uint32_t id;
	char *app_name;
	int32_t pid;          /* the application's own process id, -1 until known */
	int32_t sec_pid;      /* the socket peer's, -1 if absent */
	void *impl;           /* backend data */
};

struct al_stream_params {
	bool is_sink;         /* Audio/Sink: clients play into it */
	const char *name, *description;
	uint32_t latency_frames;
	uint32_t n_props;
	const char *const *props; /* key, value, key, value ... */
};

struct al_core;
struct al_stream;

struct al_backend_ops {
	const char *name;
	/* [js] connects; 0 or -errno. impl data goes to core->impl */
	int (*open)(struct al_core *c, const char *app_name);
	/* [js] disconnects and frees impl; streams are already destroyed */
	void (*close)(struct al_core *c);
	/* [js] guards the mirror and backend state against [loop] */
	void (*lock)(struct al_core *c);
	void (*unlock)(struct al_core *c);
	/* [js] creates the node for s (s->cable, s->params); 0 or -errno */
	int (*stream_new)(struct al_core *c, struct al_stream *s, const struct al_stream_params *p);
	/* [js] destroys the node; returns once [rt] has left the cable */
	void (*stream_destroy)(struct al_core *c, struct al_stream *s);
	/* [any] a stream state code (al_stream.state, AL_EV_STATE b) as a word ("streaming") */
	const char *(*state_name)(int code);
	/* [js] asks the server to destroy an object (a client stream or connection) */
	int (*destroy_global)(struct al_core *c, uint32_t id);
	/* [js] the library versions */
	const char *(*version_compiled)(void);
	const char *(*version_linked)(void);
	const char *(*strerror)(int err);
};

struct al_core {
	struct al_list link;          /* in the host's cores, [js] */
	struct al_host *host;
	const struct al_backend_ops *ops;
	void *impl;
	struct al_target target;      /* [js] core events */
	struct al_list streams;       /* [js, locked] live streams */
	bool closed;                  /* [js] */
	_Atomic int connected;

	/* the mirror: [loop], or [js] under ops->lock */
	struct al_list nodes, links, clients;
};

struct al_stream {
	struct al_list link;          /* in core->streams */
	struct al_core *core;         /* NULL once destroyed or the core closed */
	struct al_cable *cable;       /* one reference, until destroyed */
	struct al_target target;      /* [js] stream events */
	bool is_sink;
	void *impl;
	_Atomic int state;            /* backend state code, [loop] */
	_Atomic uint32_t node_id;     /* AL_ID_NONE until known, [loop] */
};

/* [js] */
int al_core_open(struct al_core *c, struct al_host *h, const struct al_backend_ops *ops, const char *app_name);
void al_core_close(struct al_core *c);
int al_stream_create(struct al_stream *s, struct al_core *c, struct al_cable *cable, const struct al_stream_params *p);
void al_stream_destroy(struct al_stream *s);

/* [loop] mirror helpers for backends */
void al_mirror_free_node(struct al_node_info *n);
void al_mirror_free_client(struct al_client_info *ci);
/* [loop] counts client links per stream, and the active ones (link active
 * and the peer's node not stopped); pushes AL_EV_LINKS (a = links,
 * b = active) when either count changes */
void al_mirror_update_links(struct al_core *c);

extern const struct al_backend_ops al_pipewire_ops;
/* in audioloop_pulse.node (pa-backend.c), loaded on first use by pa-load.c */
extern const struct al_backend_ops al_pulseaudio_ops;
/* [js] pa-load.c: the PulseAudio ops, loading the module on first use; NULL
 * if it cannot be loaded (al_pulseaudio_load_error() says why) */
const struct al_backend_ops *al_pulseaudio_ops_load(void);
const char *al_pulseaudio_load_error(void);

#endif
