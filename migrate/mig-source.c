/* The source's pre-copy engine. One thread per migration does everything
 * that blocks: connecting, the hellos, memory rounds driven by the dirty log,
 * stop-and-copy, the commit. The rules it keeps:
 *  - Until `go` is sent, any failure resumes the guest here (if it paused
 *    it) and drops the connection, so the destination discards its copy.
 *  - From the moment `go` may have left, the guest never runs here again on
 *    its own (vm->handed_off): without `running` it stays paused.
 * Rounds: round 1 sends every populated page (memfd data extents: pages that
 * were never touched are not even read); each later round sends what the
 * dirty log reports, until what is left fits the downtime budget at the
 * measured bandwidth. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "migrate/disk-copy.h"
#include "migrate/mig-source.h"
#include "vmhop/compat.h"
#include "vmhop/dirty-log.h"
#include "vmhop/host-profile.h"
#include "vmhop/log.h"
#include "vmhop/migrate-fault.h"
#include "vmhop/migrate-proto.h"
#include "vmhop/ram-extents.h"
#include "vmhop/release.h"
#include "vmhop/section.h"
#include "vmhop/stream.h"
#include "vmhop/util.h"
#include "vmhop/vm-config-json.h"
#include "vmhop/vm-sections.h"
#include "vmhop/vm.h"

#define WRITE_CHUNK (256 * 1024)
#define STAGE_SIZE (1024 * 1024)
#define MAX_ROUNDS 30	/* without auto-converge: then it will not converge */
#define EXTENT_CHUNK 4096	/* pages per write in round 1, between progress updates */
#define AC_INITIAL 50		/* auto-converge: first throttle step (%) */
#define AC_STEP 20
#define MIB (1024.0 * 1024.0)

/* Everything one run of the engine owns. */
struct engine {
	struct migration *m;
	struct vm *vm;
	struct err e;
	struct dirty_log dl;
	bool logging;
	uint64_t *bm;
	uint64_t nbits;
	struct stream_writer w;
	bool writer;
	struct stream_mem_enc enc;
	bool encoder;
	struct stream_ram ram;
	uint64_t sent;			/* bytes on the channel */
	struct stream_stage stage;	/* page data on its way */
	bool staging;
	int io_err;			/* first channel error */
	uint64_t rate_t0, rate_sent0;	/* bandwidth limit window */
	bool paused;			/* we paused the guest */
	bool went;			/* go may have left */
	uint64_t holes;			/* pages never populated (round 1) */
	double bw;			/* bytes/s, measured */
	struct disk_send ds;		/* copied disks */
	bool disks_started;
	uint64_t lane_pages[STREAM_PAGE_KINDS];
	bool cause;			/* e holds the failure's cause: keep it */		/* pages by kind sent on the other channels */
};

static void set_status(struct migration *m, enum migrate_status s)
{
	pthread_mutex_lock(&m->lock);
	m->st.status = s;
	pthread_mutex_unlock(&m->lock);
}

static bool aborted(struct migration *m)
{
	pthread_mutex_lock(&m->lock);
	bool a = m->abort;
	pthread_mutex_unlock(&m->lock);
	return a;
}

bool mig_source__abort(struct migration *m, bool before_commit)
{
	pthread_mutex_lock(&m->lock);
	bool late = m->st.status >= MIGRATE_COMMIT;
	if (!before_commit || !late) {
		m->abort = true;
		m->cancelled |= before_commit;
		channel__shutdown(&m->ch);
		mig_lanes__shutdown(&m->lanes);
	}
	pthread_mutex_unlock(&m->lock);
	return !before_commit || !late;
}

static void set_vm_flag(struct vm *vm, bool *flag, bool on)
{
	pthread_mutex_lock(&vm->lock);
	*flag = on;
	pthread_mutex_unlock(&vm->lock);
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL) };
	while (nanosleep(&ts, &ts) < 0)
		;
}

/* A message from the destination in the middle of the stream can only be an
 * error report: read it, so the failure names the destination's reason. */
static int poll_peer(struct engine *g, int wait_ms)
{
	struct migration *m = g->m;
	if (channel__wait_readable(&m->ch, wait_ms) <= 0)
		return 0;
	struct json_object *msg = NULL;
	struct err pe = { 0 };
	int rc = mig__recv(&m->ch, wait_ms > 0 ? wait_ms : 1000, NULL, "a message", &msg, &pe);
	json_object_put(msg);
	if (!rc) {
		err__set(&m->peer_err, EPROTO, "the destination sent an unexpected message");
		return -EPROTO;
	}
	err__set(&m->peer_err, pe.code, "%s", pe.msg);
	return -pe.code;
}

/* Bytes onto the channel: the bandwidth limit, the destination's error
 * reports, and the byte count. */
static int send_bytes(struct engine *g, const uint8_t *p, size_t left)
{
	struct migration *m = g->m;
	while (left) {
		if (aborted(m))
			return -ECANCELED;
		int rc = poll_peer(g, 0);
		if (rc < 0)
			return rc;
		size_t n = MIN(left, (size_t)WRITE_CHUNK);
		if (m->p.max_bandwidth)
			mig_source__pace(m->p.max_bandwidth, &g->rate_t0, &g->rate_sent0, g->sent, n);
		rc = channel__write_full(&m->ch, p, n);
		if (rc < 0) {
			poll_peer(g, 200);	/* the reason, if the peer gave one */
			return rc;
		}
		g->sent += n;
		p += n;
		left -= n;
		pthread_mutex_lock(&m->lock);
		m->st.bytes_sent += n;
		m->st.channel_bytes[0] = g->sent;
		pthread_mutex_unlock(&m->lock);
	}
	return 0;
}

/* The stage's sink: everything, or the first channel error (kept, so the
 * engine's message can name it). */
static int sink(void *opaque, const void *buf, size_t len)
{
	struct engine *g = opaque;
	int rc = g->io_err ? g->io_err : send_bytes(g, buf, len);
	if (rc < 0)
		g->io_err = rc;
	return rc;
}

/* Everything written so far onto the wire (writer buffer, then staging). */
static int rc_flush(struct engine *g)
{
	int rc = stream__flush(&g->w);
	if (!rc)
		rc = stream_stage__flush(&g->stage);
	return rc;
}

/* The engine's error, preferring what the destination reported. */
static int fail(struct engine *g, int rc)
{
	struct migration *m = g->m;
	if (g->cause)
		return rc < 0 ? rc : -EIO;
	if (m->peer_err.code) {
		err__clear(&g->e);
		err__set(&g->e, m->peer_err.code, "%s", m->peer_err.msg);
	} else if (!g->e.code && g->io_err) {
		int code = -g->io_err;
		if (code == ETIMEDOUT)
			err__set(&g->e, code, "sending to %s: no progress within %llu ms", m->ch.peer,
				 (unsigned long long)m->p.io_timeout_ms);
		else if (code == EPIPE || code == ECONNRESET)
			err__set(&g->e, code, "sending to %s: the connection was closed", m->ch.peer);
		else
			err__setsys(&g->e, code, "sending to %s", m->ch.peer);
	} else if (!g->e.code && g->writer && g->w.err.code) {
		err__set(&g->e, g->w.err.code, "%s", g->w.err.msg);
	} else if (!g->e.code) {
		err__set(&g->e, rc < 0 ? -rc : EIO, "%s", strerror(rc < 0 ? -rc : EIO));
	}
	return rc < 0 ? rc : -EIO;
}

static int writer_rc(struct engine *g, int rc)
{
	return rc < 0 ? fail(g, rc) : 0;
}

static int fault(struct engine *g, const char *phase)
{
	struct migration *m = g->m;
	int rc = mig_fault__at(m->p.fault, phase, &m->ch, m->p.io_timeout_ms, &g->e);
	return rc < 0 ? fail(g, rc) : 0;
}

static void count_pages(struct engine *g)
{
	struct migration *m = g->m;
	pthread_mutex_lock(&m->lock);
	m->st.pages_sent_raw = g->enc.stats.pages[STREAM_PAGE_RAW];
	m->st.pages_sent_compressed = g->enc.stats.pages[STREAM_PAGE_ZSTD];
	pthread_mutex_unlock(&m->lock);
}

/* This host's profile with its view of the VM's disks, for the hello. */
static struct json_object *own_profile(struct engine *g, struct host_profile *p)
{
	struct json_object *j = NULL;
	if (host_profile__collect(p, &g->e) < 0 ||
	    host_profile__view_disks(p, g->vm->cfg, NULL, 0, &g->e) < 0)
		return NULL;
	if (host_profile__to_json(p, &j) < 0)
		err__set(&g->e, ENOMEM, "out of memory");
	return j;
}

/* The pre-flight rules on the destination's profile, before a page moves.
 * The report stays with the migration for query-migrate and the summary. */
static int preflight(struct engine *g, const struct host_profile *src, struct json_object *reply)
{
	struct migration *m = g->m;
	struct json_object *pj, *rj = NULL;
	struct host_profile *dst = malloc(sizeof(*dst));
	struct compat_report *r = malloc(sizeof(*r));
	int rc = dst && r ? 0 : err__set(&g->e, ENOMEM, "out of memory");
	if (!rc && !json_object_object_get_ex(reply, "profile", &pj))
		rc = err__set(&g->e, EPROTO, "the destination's hello has no host profile");
	if (!rc && (rc = host_profile__from_json(pj, dst, &g->e)) < 0) {
		char why[sizeof(g->e.msg)];
		snprintf(why, sizeof(why), "%s", g->e.msg);
		err__clear(&g->e);
		rc = err__set(&g->e, EPROTO, "the destination's host profile: %s", why);
	}
	bool copied[VM_MAX_DISKS] = { false };
	for (unsigned k = 0; k < g->ds.n; k++)
		copied[g->ds.d[k].index] = true;
	struct compat_opts opts = { .unsafe = m->p.unsafe, .disk_copied = copied };
	if (!rc && (rc = compat__check(g->vm->cfg, src, dst, &opts, r)) < 0)
		err__set(&g->e, -rc, "pre-flight checks could not run: %s", r->rows[0].reason);
	if (!rc && compat__report_to_json(r, &rj) < 0)
		rc = err__set(&g->e, ENOMEM, "out of memory");
	if (!rc) {
		pthread_mutex_lock(&m->lock);
		m->preflight = rj;
		pthread_mutex_unlock(&m->lock);
		const struct compat_row *f = compat__first_failure(r);
		/* A check alone succeeds whatever the verdict: that is its answer. */
		if (f && !m->p.check_only)
			rc = err__set(&g->e, EPERM, "pre-flight check %s failed: %s (%s)%s", f->rule,
				      f->reason, f->fix, r->fail > 1 ? "; more in the report" : "");
	}
	free(dst);
	free(r);
	return rc;
}

int mig_source__connect(const struct migration *m, struct channel *c, struct err *e)
{
	struct channel_tls_opts tls = {
		.ca = m->p.tls_ca[0] ? m->p.tls_ca : NULL,
		.cert = m->p.tls_cert[0] ? m->p.tls_cert : NULL,
		.key = m->p.tls_key[0] ? m->p.tls_key : NULL,
		.name = m->p.tls_name[0] ? m->p.tls_name : NULL,
	};
	int rc = channel__connect_tls(m->p.uri, (int)m->p.io_timeout_ms, &tls, c, e);
	if (rc == 0)
		channel__set_timeout(c, (int)m->p.io_timeout_ms);
	return rc;
}

void mig_source__pace(uint64_t bps, uint64_t *t0, uint64_t *sent0, uint64_t sent, size_t n)
{
	uint64_t now = util__now_ns();
	/* A window that restarts every second keeps the limit honest without
	 * letting an idle pause bank a burst. */
	if (now - *t0 > 1000000000ULL) {
		*t0 = now;
		*sent0 = sent;
	}
	uint64_t due = (uint64_t)((double)(sent - *sent0 + n) * 1e9 / (double)bps);
	if (due > now - *t0)
		sleep_ns(due - (now - *t0));
}

static int handshake(struct engine *g)
{
	struct migration *m = g->m;
	int rc = mig_source__connect(m, &m->ch, &g->e);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&m->lock);
	channel__identity(&m->ch, m->st.peer, sizeof(m->st.peer));
	pthread_mutex_unlock(&m->lock);
	struct host_profile *src = malloc(sizeof(*src));
	struct json_object *hello = src ? mig__hello("source", &g->e) : NULL, *reply = NULL;
	struct json_object *prof = hello ? own_profile(g, src) : NULL, *vmj = NULL;
	if (!src)
		err__set(&g->e, ENOMEM, "out of memory");
	if (prof && vm_config__to_json(g->vm->cfg, &vmj) < 0)
		err__set(&g->e, ENOMEM, "out of memory");
	if (!vmj) {
		json_object_put(hello);
		json_object_put(prof);
		free(src);
		return -(g->e.code ? g->e.code : ENOMEM);
	}
	/* The destination needs the VM's disks to report its view of them. */
	json_object_object_add(hello, "profile", prof);
	json_object_object_add(hello, "vm", vmj);
	json_object_object_add(hello, "probe", json_object_new_boolean(m->p.check_only));
	if (m->lanes.nlanes > 1) {
		json_object_object_add(hello, "channels", json_object_new_int((int)m->lanes.nlanes));
		json_object_object_add(hello, "token", json_object_new_string(m->lanes.token));
	}
	struct json_object *disks = disk_send__hello(&g->ds, g->vm);
	if (disks) {
		json_object_object_add(hello, "disks", disks);
		json_object_object_add(hello, "verify_disks", json_object_new_boolean(m->p.verify_disks));
		json_object_object_add(hello, "full_copy_fallback",
				       json_object_new_boolean(m->p.full_copy_fallback));
	}
	rc = mig__send(&m->ch, hello, &g->e);
	json_object_put(hello);
	if (rc < 0) {
		/* A peer that is not vmhop may have answered and hung up before
		 * our hello was through: what it said is the better message. */
		struct err said = { 0 };
		if (mig__recv(&m->ch, 500, "hello", "the destination's hello", &reply, &said) == 0 ||
		    (said.code && said.code != EPIPE && said.code != ETIMEDOUT)) {
			err__clear(&g->e);
			rc = reply ? err__set(&g->e, EPROTO, "the destination said hello before ours was through")
				   : err__set(&g->e, said.code, "%s", said.msg);
		}
	}
	if (!rc)
		rc = mig__recv(&m->ch, 0, "hello", "the destination's hello", &reply, &g->e);
	if (!rc)
		rc = mig__check_hello(reply, "destination", &g->e);
	if (!rc)
		rc = disk_send__apply_reply(&g->ds, reply, &g->e);
	if (!rc)
		rc = preflight(g, src, reply);
	json_object_put(reply);
	free(src);
	if (rc < 0)
		return rc;
	return fault(g, "hello");
}

static int start_stream(struct engine *g)
{
	struct release_matrix rm;
	struct release_policy pol;
	int rc = release__policy(&rm, &pol, &g->e);
	if (rc < 0)
		return rc;
	/* Page data is copied into a stage with its checksum, not sent from
	 * guest memory: the guest keeps writing its pages meanwhile. */
	if (stream_stage__init(&g->stage, STAGE_SIZE, sink, g) < 0)
		return err__set(&g->e, ENOMEM, "out of memory");
	g->staging = true;
	rc = stream__writer_init_release(&g->w, &g->stage.io, &pol, 0, false);
	g->writer = true;
	if (rc < 0)
		return fail(g, rc);
	struct stream_mem_enc_opts eo = { .compress = g->m->p.compress, .detect_zero = true };
	if ((rc = stream__mem_enc_init(&g->enc, &eo, &g->e)) < 0)
		return rc;
	g->encoder = true;
	/* The destination builds the VM from this before any page arrives. */
	rc = section__save_one(vm_sections__registry(g->vm), &g->w, VM_SECTION_CONFIG, &g->e);
	if (rc < 0 || g->m->lanes.nlanes <= 1)
		return rc;
	/* ... and then waits for the further channels. */
	if (rc_flush(g) < 0)
		return fail(g, g->io_err ? g->io_err : -EIO);
	rc = mig_lanes__open(&g->m->lanes, g->m, &g->ram, &g->e);
	/* A channel the destination closed on joining: its reason, given on
	 * the first channel, says more. */
	if (rc == -EPIPE || rc == -ECONNRESET) {
		poll_peer(g, 500);
		rc = fail(g, rc);
	}
	return rc;
}

static int start_logging(struct engine *g)
{
	dirty_log__init(&g->dl, &g->vm->mem, g->vm->vm_fd);
	struct err ignore = { 0 };
	/* Manual protect keeps write faults off pages not yet sent; without it
	 * classic logging works the same for this engine. */
	(void)dirty_log__enable_manual_protect(&g->dl, false, &ignore);
	int rc = dirty_log__start(&g->dl, &g->e);
	if (rc < 0)
		return rc;
	g->logging = true;
	g->nbits = g->vm->mem.nr_pages;
	g->bm = calloc(dirty_log__bitmap_words(&g->dl), sizeof(uint64_t));
	if (!g->bm)
		return err__set(&g->e, ENOMEM, "out of memory for the dirty bitmap");
	return 0;
}

/* A NOTE per round: free text for vmhop stream-info and the destination
 * ("round N", and "round N final" for the one with the vCPUs stopped). */
static int note_round(struct engine *g, uint64_t round, bool final)
{
	char text[48];
	snprintf(text, sizeof(text), "round %llu%s", (unsigned long long)round,
		 final ? " final" : "");
	return writer_rc(g, stream__write_note(&g->w, text));
}

static int out_of_time(struct engine *g)
{
	struct migration *m = g->m;
	if (!m->p.timeout_ms || util__now_ns() - m->st.start_ns <= m->p.timeout_ms * 1000000ULL)
		return 0;
	return err__set(&g->e, ETIMEDOUT, "not done within %llu s (the first copy of the guest's "
			"memory alone takes longer: raise --max-bandwidth or --timeout)",
			(unsigned long long)(m->p.timeout_ms / 1000));
}

static int send_run(void *opaque, uint64_t first, uint64_t count)
{
	struct engine *g = opaque;
	if (aborted(g->m))
		return -ECANCELED;
	return stream__mem_write_range(&g->w, &g->enc, &g->ram, first, count);
}

/* With parallel channels: every lane sends its groups of the pages set in
 * bm at once, this thread those of the first channel. */
static int send_lanes(struct engine *g, const uint64_t *bm)
{
	struct mig_lanes *ls = &g->m->lanes;
	struct err le = { 0 };
	int rc = mig_lanes__start(ls, bm, g->nbits, &le);
	if (!rc)
		rc = mig_lane__for_each(bm, g->nbits, 0, ls->nlanes, send_run, g);
	if (!rc && rc_flush(g) < 0)
		rc = g->io_err ? g->io_err : -EIO;
	if (rc < 0) {
		/* Stop the other lanes; the first channel stays readable for
		 * the destination's reason. */
		pthread_mutex_lock(&g->m->lock);
		g->m->abort = true;
		pthread_mutex_unlock(&g->m->lock);
		mig_lanes__shutdown(ls);
	}
	int lrc = mig_lanes__wait(ls, &le);
	/* A channel that failed before anything was stopped is the cause. */
	pthread_mutex_lock(&g->m->lock);
	struct err cause = g->m->lane_err;
	pthread_mutex_unlock(&g->m->lock);
	if (cause.code) {
		/* A channel the destination closed: its reason, if it gives one
		 * on the first channel, says more. */
		bool closed = cause.code == EPIPE || cause.code == ECONNRESET;
		if (closed && !g->m->peer_err.code)
			poll_peer(g, 500);
		if (closed && g->m->peer_err.code)
			cause = g->m->peer_err;
		err__clear(&g->e);
		err__set(&g->e, cause.code, "%s", cause.msg);
		g->cause = true;
		mig_source__abort(g->m, false);
		return -cause.code;
	}
	if (rc < 0) {
		rc = fail(g, rc);
		mig_source__abort(g->m, false);
		return rc;
	}
	if (lrc < 0) {
		err__set(&g->e, le.code, "%s", le.msg);
		mig_source__abort(g->m, false);
		return lrc;
	}
	count_pages(g);
	return 0;
}

static int first_round_lanes(struct engine *g, uint64_t *skipped_holes)
{
	struct ram_extents x;
	int rc = ram_extents__list(g->vm->mem.memfd, g->nbits, &x, &g->e);
	if (rc < 0)
		return rc;
	*skipped_holes = g->nbits - x.pages;
	uint64_t *bm = calloc(dirty_bitmap__words(g->nbits), sizeof(uint64_t));
	if (!bm) {
		ram_extents__free(&x);
		return err__set(&g->e, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < x.n; i++)
		dirty_bitmap__set_range(bm, x.v[i].first, x.v[i].count);
	pthread_mutex_lock(&g->m->lock);
	g->m->st.remaining_bytes = x.pages * GUEST_PAGE_SIZE;
	pthread_mutex_unlock(&g->m->lock);
	ram_extents__free(&x);
	rc = send_lanes(g, bm);
	free(bm);
	return rc;
}

/* Round 1: every populated page, found by asking the memfd for its data
 * extents; holes are never read and cost nothing on the wire. The extents
 * are listed first so progress can say how much is left. */
static int first_round(struct engine *g, uint64_t *skipped_holes)
{
	if (g->m->lanes.nlanes > 1)
		return first_round_lanes(g, skipped_holes);
	struct ram_extents x;
	int rc = ram_extents__list(g->vm->mem.memfd, g->nbits, &x, &g->e);
	if (rc < 0)
		return rc;
	*skipped_holes = g->nbits - x.pages;
	uint64_t left = x.pages, t0 = util__now_ns(), s0 = g->sent;
	for (size_t i = 0; i < x.n && !rc; i++) {
		uint64_t end = x.v[i].first + x.v[i].count;
		for (uint64_t a = x.v[i].first; a < end && !rc; a += EXTENT_CHUNK) {
			uint64_t c = MIN((uint64_t)EXTENT_CHUNK, end - a);
			rc = stream__mem_write_range(&g->w, &g->enc, &g->ram, a, c);
			if (rc < 0) {
				rc = fail(g, rc);
				break;
			}
			left -= c;
			count_pages(g);
			uint64_t dt = util__now_ns() - t0;
			pthread_mutex_lock(&g->m->lock);
			g->m->st.remaining_bytes = left * GUEST_PAGE_SIZE;
			if (dt > 100000000ULL)
				g->m->st.throughput_mib_s = (double)(g->sent - s0) / MIB * 1e9 / (double)dt;
			pthread_mutex_unlock(&g->m->lock);
			if (aborted(g->m))
				rc = fail(g, -ECANCELED);
			else
				rc = out_of_time(g);
		}
	}
	ram_extents__free(&x);
	return rc;
}

/* Sends the pages set in bm, re-arming each run's logging just before it is
 * read, and clears them in bm. */
static int send_dirty(struct engine *g)
{
	if (g->m->lanes.nlanes > 1) {
		/* Re-arm all of it first: the lanes read the pages meanwhile. */
		uint64_t a = dirty_bitmap__next(g->bm, g->nbits, 0);
		while (a < g->nbits) {
			uint64_t b = dirty_bitmap__next_clear(g->bm, g->nbits, a);
			int rc = dirty_log__clear(&g->dl, g->bm, a, b - a, &g->e);
			if (rc < 0)
				return rc;
			a = dirty_bitmap__next(g->bm, g->nbits, b);
		}
		int rc = send_lanes(g, g->bm);
		memset(g->bm, 0, dirty_bitmap__words(g->nbits) * sizeof(uint64_t));
		return rc;
	}
	uint64_t a = dirty_bitmap__next(g->bm, g->nbits, 0);
	while (a < g->nbits) {
		uint64_t b = dirty_bitmap__next_clear(g->bm, g->nbits, a);
		int rc = dirty_log__clear(&g->dl, g->bm, a, b - a, &g->e);
		if (rc < 0)
			return rc;
		rc = stream__mem_write_range(&g->w, &g->enc, &g->ram, a, b - a);
		if (rc < 0)
			return fail(g, rc);
		dirty_bitmap__clear_range(g->bm, a, b - a);
		if (aborted(g->m))
			return fail(g, -ECANCELED);
		a = dirty_bitmap__next(g->bm, g->nbits, b);
	}
	count_pages(g);
	if (rc_flush(g) < 0)
		return fail(g, g->io_err ? g->io_err : -EIO);
	return 0;
}

static void measure(struct engine *g, uint64_t bytes, uint64_t ns)
{
	/* Rounds too small to time say little about the link. */
	if (ns >= 20000000ULL && bytes >= (1u << 20))
		g->bw = (double)bytes * 1e9 / (double)ns;
	else if (g->bw == 0 && ns)
		g->bw = (double)bytes * 1e9 / (double)ns;
	if (g->m->p.max_bandwidth && (g->bw == 0 || g->bw > (double)g->m->p.max_bandwidth))
		g->bw = (double)g->m->p.max_bandwidth;
}

static int fault_disk(void *opaque)
{
	return fault(opaque, "disk");
}

/* Copied disks' bulk pass, in round 1 after memory: the guest's writes from
 * the start of the pass on are tracked and go in the next rounds. */
static int disk_bulk(struct engine *g)
{
	int rc = disk_send__start(&g->ds, g->vm, &g->e);
	g->disks_started = true;
	if (!rc)
		rc = disk_send__bulk(&g->ds, &g->w, fault_disk, g, &g->e);
	return rc < 0 ? fail(g, rc) : 0;
}

/* The blocks the guest wrote since the last round (after its memory). */
static int send_disk_blocks(struct engine *g, bool first_resend)
{
	if (!disk_send__pending_bytes(&g->ds))
		return 0;
	int rc = first_resend ? fault(g, "diskround") : 0;
	if (!rc)
		rc = disk_send__send_pending(&g->ds, &g->w, &g->e);
	if (!rc && rc_flush(g) < 0)
		rc = g->io_err ? g->io_err : -EIO;
	return rc < 0 ? fail(g, rc) : 0;
}

static int precopy(struct engine *g)
{
	struct migration *m = g->m;
	set_status(m, MIGRATE_ACTIVE);
	uint64_t t0 = util__now_ns();
	int rc = note_round(g, 1, false);
	if (!rc)
		rc = fault(g, "round1");
	if (!rc)
		rc = first_round(g, &g->holes);
	if (!rc && g->ds.n)
		rc = disk_bulk(g);
	if (!rc && rc_flush(g) < 0)
		rc = fail(g, g->io_err ? g->io_err : -EIO);
	if (rc < 0)
		return rc;
	/* Logging started just before round 1: the first fetch covers it. */
	uint64_t t_fetch = t0;
	measure(g, g->sent, util__now_ns() - t0);
	pthread_mutex_lock(&m->lock);
	m->st.rounds = 1;
	m->st.pages_skipped_zero = g->holes + g->enc.stats.pages[STREAM_PAGE_ZERO];
	m->st.throughput_mib_s = g->bw / MIB;
	pthread_mutex_unlock(&m->lock);

	bool resent_disk = false;
	for (uint64_t round = 2;; round++) {
		if ((rc = dirty_log__fetch(&g->dl, g->bm, &g->e)) < 0)
			return rc;
		uint64_t now = util__now_ns();
		uint64_t pending = dirty_bitmap__count(g->bm, g->nbits);
		uint64_t disk_pending = disk_send__collect(&g->ds);
		/* Disk blocks and pages cost the same link: converge on both. */
		double remaining = (double)pending * GUEST_PAGE_SIZE + (double)disk_pending;
		double dirty_rate = remaining * 1e9 / (double)(now - t_fetch ? now - t_fetch : 1);
		t_fetch = now;
		pthread_mutex_lock(&m->lock);
		m->st.remaining_bytes = (uint64_t)remaining;
		m->st.disk_remaining_bytes = disk_pending;
		m->st.dirty_rate_mib_s = dirty_rate / MIB;
		m->st.throughput_mib_s = g->bw / MIB;
		pthread_mutex_unlock(&m->lock);
		if (vm__state_ended(vm__state(g->vm)))
			return err__set(&g->e, ECANCELED, "the guest stopped during the migration (%s)",
					vm__state_name(vm__state(g->vm)));
		if (remaining <= g->bw * (double)m->p.max_downtime_ms / 1000.0)
			return 0;
		bool late = m->p.timeout_ms && now - m->st.start_ns > m->p.timeout_ms * 1000000ULL;
		if (late || (!m->p.auto_converge && round > MAX_ROUNDS)) {
			char when[48];
			if (late)
				snprintf(when, sizeof(when), "within %llu s",
					 (unsigned long long)(m->p.timeout_ms / 1000));
			else
				snprintf(when, sizeof(when), "after %d rounds", MAX_ROUNDS);
			return err__set(&g->e, ETIMEDOUT,
					"did not converge %s: the guest dirties %.1f MiB/s, the link "
					"carries %.1f MiB/s, %.1f MiB left (raise --max-bandwidth or "
					"--max-downtime, or use --auto-converge)", when, dirty_rate / MIB,
					g->bw / MIB, remaining / MIB);
		}
		if (m->p.auto_converge && dirty_rate * 2 >= g->bw) {
			/* Steps grow with how far the guest outruns the link. */
			unsigned step = dirty_rate >= 2 * g->bw ? 2 * AC_STEP : AC_STEP;
			unsigned pct = m->st.throttle_pct ? m->st.throttle_pct + step : AC_INITIAL;
			pct = MIN(pct, 99u);
			if ((rc = vm__set_throttle(g->vm, pct, &g->e)) < 0)
				return rc;
			pthread_mutex_lock(&m->lock);
			m->st.throttle_pct = pct;
			pthread_mutex_unlock(&m->lock);
		}
		uint64_t s0 = g->sent, r0 = util__now_ns();
		rc = note_round(g, round, false);
		if (!rc && round == 2)
			rc = fault(g, "precopy");
		if (!rc)
			rc = send_dirty(g);
		if (!rc)
			rc = send_disk_blocks(g, !resent_disk);
		resent_disk |= disk_pending > 0;
		if (rc < 0)
			return rc;
		measure(g, g->sent - s0, util__now_ns() - r0);
		pthread_mutex_lock(&m->lock);
		m->st.rounds = round;
		pthread_mutex_unlock(&m->lock);
	}
}

static int stop_and_copy(struct engine *g, uint64_t *t_pause)
{
	struct migration *m = g->m;
	set_status(m, MIGRATE_STOPCOPY);
	*t_pause = util__now_ns();
	int rc = vm__pause(g->vm, &g->e);
	if (rc < 0)
		return rc;
	g->paused = true;
	set_vm_flag(g->vm, &g->vm->held, true);
	struct err ignore = { 0 };
	vm__set_throttle(g->vm, 0, &ignore);
	if ((rc = fault(g, "stopcopy")) < 0)
		return rc;
	if ((rc = dirty_log__fetch(&g->dl, g->bm, &g->e)) < 0)
		return rc;
	/* The devices are paused: no request in flight, the last writes are
	 * in the images and in the trackers. */
	uint64_t disk_pending = disk_send__collect(&g->ds);
	pthread_mutex_lock(&m->lock);
	m->st.rounds++;
	m->st.remaining_bytes = dirty_bitmap__count(g->bm, g->nbits) * GUEST_PAGE_SIZE + disk_pending;
	m->st.disk_remaining_bytes = disk_pending;
	pthread_mutex_unlock(&m->lock);
	rc = note_round(g, m->st.rounds, true);
	if (!rc)
		rc = send_dirty(g);
	if (!rc)
		rc = send_disk_blocks(g, false);
	if (!rc && m->p.verify_disks && g->ds.n && (rc = disk_send__digests(&g->ds, &g->w, &g->e)) < 0)
		rc = fail(g, rc);
	/* Every channel's memory ends before the state goes. */
	if (!rc && m->lanes.nlanes > 1 && (rc = mig_lanes__finish(&m->lanes, &g->e)) < 0)
		mig_source__abort(m, false);
	if (!rc)
		rc = section__save_except(vm_sections__registry(g->vm), &g->w, VM_SECTION_CONFIG, &g->e);
	if (!rc)
		rc = writer_rc(g, stream__finish(&g->w));
	return rc;
}

/* The destination's digests of the copies, for the summary. */
static void ready_disks(struct engine *g, struct json_object *ready)
{
	struct json_object *a, *o, *v;
	if (!json_object_object_get_ex(ready, "disks", &a) || !json_object_is_type(a, json_type_array))
		return;
	pthread_mutex_lock(&g->m->lock);
	for (unsigned k = 0; k < g->ds.n && k < json_object_array_length(a); k++) {
		o = json_object_array_get_idx(a, k);
		if (json_object_object_get_ex(o, "sha256", &v)) {
			struct migrate_disk_stats *st = &g->m->st.disks[k];
			snprintf(st->sha256_dst, sizeof(st->sha256_dst), "%s", json_object_get_string(v));
			st->digests = st->sha256_src[0] != 0;
		}
	}
	pthread_mutex_unlock(&g->m->lock);
}

static int commit(struct engine *g, uint64_t t_pause)
{
	struct migration *m = g->m;
	set_status(m, MIGRATE_COMMIT);
	struct json_object *msg = NULL;
	int rc = mig__recv(&m->ch, 0, "ready", "the destination's ready", &msg, &g->e);
	if (!rc)
		ready_disks(g, msg);
	json_object_put(msg);
	msg = NULL;	/* reused below: a failed recv leaves it untouched */
	if (rc < 0 || (rc = fault(g, "ready")) < 0)
		return fail(g, rc);
	/* A destination that gave up meanwhile has closed the connection: find
	 * out now, while the guest may still resume here. */
	if ((rc = poll_peer(g, 0)) < 0)
		return fail(g, rc);
	/* From here the destination may run the guest: never resume it here
	 * (unless the operator forces it, so the hold ends). */
	pthread_mutex_lock(&g->vm->lock);
	g->vm->handed_off = true;
	g->vm->held = false;
	pthread_mutex_unlock(&g->vm->lock);
	g->went = true;
	rc = mig__send_type(&m->ch, "go", &g->e);
	if (!rc)
		rc = fault(g, "go");
	if (!rc)
		rc = mig__recv(&m->ch, 0, "running", "the destination's running", &msg, &g->e);
	json_object_put(msg);
	uint64_t now = util__now_ns();
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&m->lock);
	m->st.downtime_ns = now - t_pause;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static void cleanup(struct engine *g)
{
	struct err ignore = { 0 };
	vm__set_throttle(g->vm, 0, &ignore);
	if (g->logging)
		dirty_log__stop(&g->dl, &ignore);
	dirty_log__destroy(&g->dl);
	free(g->bm);
	if (g->encoder)
		stream__mem_enc_free(&g->enc);
	if (g->writer)
		stream__writer_free(&g->w);
	if (g->staging)
		stream_stage__free(&g->stage);
	for (unsigned i = 0; g->m->lanes.v && i + 1 < g->m->lanes.nlanes; i++) {
		const struct stream_mem_stats *ls = &g->m->lanes.v[i].enc.stats;
		for (unsigned k = 0; k < STREAM_PAGE_KINDS; k++)
			g->lane_pages[k] += ls->pages[k];
	}
	mig_lanes__close(&g->m->lanes);
	pthread_mutex_lock(&g->m->lock);
	channel__close(&g->m->ch);
	pthread_mutex_unlock(&g->m->lock);
}

void mig_source__run(struct migration *m)
{
	struct engine g = { .m = m, .vm = m->vm };
	g.ram = (struct stream_ram){ .host = m->vm->mem.base, .npages = m->vm->mem.nr_pages };
	dirty_log__init(&g.dl, &m->vm->mem, m->vm->vm_fd);
	uint64_t t_pause = 0;
	set_vm_flag(m->vm, &m->vm->migrating, true);
	g.ds.st = m->st.disks;
	g.ds.lock = &m->lock;
	m->lanes.nlanes = m->p.channels ? m->p.channels : 1;
	pthread_mutex_lock(&m->lock);
	m->st.nr_channels = m->lanes.nlanes;
	pthread_mutex_unlock(&m->lock);
	if (m->lanes.nlanes > 1) {
		uint8_t rnd[MIG_TOKEN_LEN / 2];
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			err__setsys(&g.e, errno, "getrandom");
		for (size_t i = 0; i < sizeof(rnd); i++)
			snprintf(m->lanes.token + 2 * i, 3, "%02x", rnd[i]);
	}
	int rc = g.e.code ? -g.e.code : section__check_migratable(vm_sections__registry(m->vm), &g.e);
	if (!rc)
		rc = disk_send__select(&g.ds, m->vm, &m->p, &g.e);
	pthread_mutex_lock(&m->lock);
	m->st.nr_disks = g.ds.n;
	pthread_mutex_unlock(&m->lock);
	if (!rc)
		rc = handshake(&g);
	bool checked = !rc && m->p.check_only;
	if (!rc && !checked)
		rc = start_logging(&g);
	if (!rc && !checked)
		rc = start_stream(&g);
	pthread_mutex_lock(&m->lock);
	m->st.setup_ns = util__now_ns() - m->st.start_ns;
	pthread_mutex_unlock(&m->lock);
	if (!rc && !checked)
		rc = precopy(&g);
	if (!rc && !checked)
		rc = stop_and_copy(&g, &t_pause);
	if (!rc && !checked)
		rc = commit(&g, t_pause);
	if (rc < 0)
		fail(&g, rc);
	cleanup(&g);
	struct stream_mem_stats ms = g.enc.stats;
	for (unsigned k = 0; k < STREAM_PAGE_KINDS; k++)
		ms.pages[k] += g.lane_pages[k];

	enum migrate_status s = checked ? MIGRATE_CHECKED : MIGRATE_COMPLETED;
	disk_send__finish(&g.ds, rc == 0 && !checked);
	if (rc < 0 && g.went) {
		s = MIGRATE_UNCONFIRMED;
		char why[sizeof(g.e.msg)];
		snprintf(why, sizeof(why), "%s", g.e.msg);
		err__clear(&g.e);
		err__set(&g.e, EIO, "the destination got go but never confirmed it runs the guest "
			 "(%.300s); the guest stays paused here: check the destination, then "
			 "quit this VM or resume it with force=true", why);
	} else if (rc < 0) {
		s = MIGRATE_FAILED;
		if (m->cancelled) {
			err__clear(&g.e);
			err__set(&g.e, ECANCELED, "cancelled by migrate-cancel; the guest runs here");
		}
		set_vm_flag(m->vm, &m->vm->held, false);
		struct err ignore = { 0 };
		if (g.paused)
			vm__resume(m->vm, &ignore);
	}
	set_vm_flag(m->vm, &m->vm->migrating, false);
	pthread_mutex_lock(&m->lock);
	m->st.status = s;
	if (rc < 0)
		snprintf(m->st.error, sizeof(m->st.error), "%s", g.e.msg);
	m->st.total_ns = util__now_ns() - m->st.start_ns;
	m->st.pages_sent_raw = ms.pages[STREAM_PAGE_RAW];
	m->st.pages_sent_compressed = ms.pages[STREAM_PAGE_ZSTD];
	m->st.pages_skipped_zero = g.holes + ms.pages[STREAM_PAGE_ZERO];
	m->st.throttle_pct = 0;
	if (m->st.total_ns)
		m->st.throughput_mib_s = (double)m->st.bytes_sent / MIB * 1e9 / (double)m->st.total_ns;
	pthread_mutex_unlock(&m->lock);
}
