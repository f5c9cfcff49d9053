/* Parallel channels: the lanes of mig-lanes.h, both ends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "migrate/mig-lanes.h"
#include "migrate/mig-source.h"
#include "vmhop/dirty-log.h"
#include "vmhop/migrate-fault.h"
#include "vmhop/migrate-proto.h"
#include "vmhop/release.h"
#include "vmhop/util.h"
#include "vmhop/vm.h"

#define LANE_STAGE (1024 * 1024)
#define LANE_WRITE_CHUNK (256 * 1024)

int mig_lane__for_each(const uint64_t *bm, uint64_t nbits, unsigned lane, unsigned nlanes,
		       int (*send)(void *opaque, uint64_t first, uint64_t count), void *opaque)
{
	uint64_t a = dirty_bitmap__next(bm, nbits, 0);
	while (a < nbits) {
		uint64_t group_end = (a / MIG_LANE_PAGES + 1) * MIG_LANE_PAGES;
		if (mig_lane__of(a, nlanes) != lane) {
			/* The next group that is ours. */
			uint64_t skip = (lane + nlanes - mig_lane__of(a, nlanes)) % nlanes;
			uint64_t next = (a / MIG_LANE_PAGES + skip) * MIG_LANE_PAGES;
			a = dirty_bitmap__next(bm, nbits, MAX(next, group_end));
			continue;
		}
		uint64_t b = dirty_bitmap__next_clear(bm, MIN(nbits, group_end), a);
		int rc = send(opaque, a, b - a);
		if (rc < 0)
			return rc;
		a = dirty_bitmap__next(bm, nbits, b);
	}
	return 0;
}

/* ---- source ---- */

static bool aborted(struct migration *m)
{
	pthread_mutex_lock(&m->lock);
	bool a = m->abort;
	pthread_mutex_unlock(&m->lock);
	return a;
}

static int lane_sink(void *opaque, const void *buf, size_t len)
{
	struct mig_lane *ln = opaque;
	const uint8_t *p = buf;
	if (ln->io_err)
		return ln->io_err;
	while (len) {
		if (aborted(ln->m))
			return ln->io_err = -ECANCELED;
		size_t n = MIN(len, (size_t)LANE_WRITE_CHUNK);
		if (ln->max_bandwidth)
			mig_source__pace(ln->max_bandwidth, &ln->rate_t0, &ln->rate_sent0, ln->sent, n);
		int rc = channel__write_full(&ln->ch, p, n);
		if (rc < 0)
			return ln->io_err = rc;
		ln->sent += n;
		p += n;
		len -= n;
		pthread_mutex_lock(&ln->m->lock);
		ln->m->st.bytes_sent += n;
		ln->m->st.channel_bytes[ln->index] = ln->sent;
		pthread_mutex_unlock(&ln->m->lock);
	}
	return 0;
}

/* The lane's error as one line naming the lane. */
static int lane_fail(struct mig_lane *ln, int rc)
{
	if (ln->e.code)
		return rc;
	int code = ln->io_err ? -ln->io_err : rc < 0 ? -rc : EIO;
	if (ln->writer && ln->w.err.code && !ln->io_err)
		err__set(&ln->e, ln->w.err.code, "channel %u: %s", ln->index, ln->w.err.msg);
	else if (code == ECANCELED)
		err__set(&ln->e, code, "channel %u: stopped: the migration failed", ln->index);
	else if (code == ETIMEDOUT)
		err__set(&ln->e, code, "channel %u to %s: no progress within the I/O timeout", ln->index,
			 ln->ch.peer);
	else if (code == EPIPE || code == ECONNRESET)
		err__set(&ln->e, code, "channel %u to %s: the connection was closed", ln->index,
			 ln->ch.peer);
	else
		err__setsys(&ln->e, code, "channel %u to %s", ln->index, ln->ch.peer);
	return rc < 0 ? rc : -code;
}

static int open_one(struct mig_lane *ln, const char *token, struct err *e)
{
	struct migration *m = ln->m;
	int rc = mig_source__connect(m, &ln->ch, e);
	if (rc < 0)
		return rc;
	struct json_object *join = json_object_new_object(), *reply = NULL;
	if (!join)
		return err__set(e, ENOMEM, "out of memory");
	json_object_object_add(join, "type", json_object_new_string("join"));
	json_object_object_add(join, "token", json_object_new_string(token));
	json_object_object_add(join, "index", json_object_new_int((int)ln->index));
	rc = mig__send(&ln->ch, join, e);
	json_object_put(join);
	if (!rc)
		rc = mig__recv(&ln->ch, 0, "joined", "the destination's answer on a channel", &reply, e);
	json_object_put(reply);
	if (rc < 0)
		return rc;
	struct release_matrix rm;
	struct release_policy pol;
	if ((rc = release__policy(&rm, &pol, e)) < 0)
		return rc;
	if (stream_stage__init(&ln->stage, LANE_STAGE, lane_sink, ln) < 0)
		return err__set(e, ENOMEM, "out of memory");
	ln->staging = true;
	rc = stream__writer_init_release(&ln->w, &ln->stage.io, &pol, 0, false);
	ln->writer = true;
	if (rc < 0)
		return err__set(e, ln->w.err.code ? ln->w.err.code : EIO, "channel %u: %s", ln->index,
				ln->w.err.msg);
	struct stream_mem_enc_opts eo = { .compress = m->p.compress, .detect_zero = true };
	if ((rc = stream__mem_enc_init(&ln->enc, &eo, e)) < 0)
		return rc;
	ln->encoder = true;
	return 0;
}

int mig_lanes__open(struct mig_lanes *ls, struct migration *m, const struct stream_ram *ram,
		    struct err *e)
{
	if (ls->nlanes <= 1)
		return 0;
	ls->v = calloc(ls->nlanes - 1, sizeof(*ls->v));
	if (!ls->v)
		return err__set(e, ENOMEM, "out of memory");
	for (unsigned i = 0; i < ls->nlanes - 1; i++) {
		struct mig_lane *ln = &ls->v[i];
		ln->m = m;
		ln->index = i + 1;
		ln->ch.fd = -1;
		ln->ram = ram;
		ln->max_bandwidth = m->p.max_bandwidth / ls->nlanes;
	}
	for (unsigned i = 0; i < ls->nlanes - 1; i++) {
		struct err le = { 0 };
		int rc = open_one(&ls->v[i], ls->token, &le);
		if (rc < 0)
			return err__set(e, le.code ? le.code : EIO, "channel %u: %s", i + 1, le.msg);
	}
	return 0;
}

static int lane_send_run(void *opaque, uint64_t first, uint64_t count)
{
	struct mig_lane *ln = opaque;
	if (aborted(ln->m))
		return -ECANCELED;
	char phase[16];
	snprintf(phase, sizeof(phase), "channel%u", ln->index);
	/* Test hook: the first pages go as the neighbouring group's, which
	 * belongs to another channel. */
	if (!ln->faulted && mig_fault__is(ln->m->p.fault, phase, "stray")) {
		if (first + MIG_LANE_PAGES + count <= ln->ram->npages)
			first += MIG_LANE_PAGES;
		else if (first >= MIG_LANE_PAGES)
			first -= MIG_LANE_PAGES;
	}
	int rc = stream__mem_write_range(&ln->w, &ln->enc, ln->ram, first, count);
	if (!rc && !ln->faulted) {
		ln->faulted = true;
		if ((rc = stream__flush(&ln->w)) == 0 && (rc = stream_stage__flush(&ln->stage)) == 0 &&
		    (rc = mig_fault__at(ln->m->p.fault, phase, &ln->ch, ln->m->p.io_timeout_ms, &ln->e)) < 0)
			ln->io_err = rc;
	}
	return rc;
}

static void *lane_thread(void *arg)
{
	struct mig_lane *ln = arg;
	int rc = mig_lane__for_each(ln->bm, ln->nbits, ln->index, ln->nlanes, lane_send_run, ln);
	if (!rc)
		rc = stream__flush(&ln->w);
	if (!rc)
		rc = stream_stage__flush(&ln->stage);
	ln->rc = rc < 0 ? lane_fail(ln, rc) : 0;
	if (ln->rc < 0) {
		/* The first failure, before anything was stopped, is the cause. */
		pthread_mutex_lock(&ln->m->lock);
		if (!ln->m->abort && !ln->m->lane_err.code)
			ln->m->lane_err = ln->e;
		/* Stop the others, but leave the first channel open: the
		 * destination may still say why there (mig-source.c). */
		ln->m->abort = true;
		pthread_mutex_unlock(&ln->m->lock);
		mig_lanes__shutdown(&ln->m->lanes);
		return NULL;
		/* Wake the others and lane 0: the migration has failed. */
		mig_source__abort(ln->m, false);
	}
	return NULL;
}

int mig_lanes__start(struct mig_lanes *ls, const uint64_t *bm, uint64_t nbits, struct err *e)
{
	for (unsigned i = 0; i + 1 < ls->nlanes; i++) {
		struct mig_lane *ln = &ls->v[i];
		ln->bm = bm;
		ln->nbits = nbits;
		ln->nlanes = ls->nlanes;
		ln->rc = 0;
		int r = pthread_create(&ln->thread, NULL, lane_thread, ln);
		if (r) {
			mig_source__abort(ln->m, false);
			mig_lanes__wait(ls, e);
			return err__setsys(e, r, "starting the thread of channel %u", ln->index);
		}
		ln->running = true;
	}
	return 0;
}

int mig_lanes__wait(struct mig_lanes *ls, struct err *e)
{
	int first = 0;
	for (unsigned i = 0; i + 1 < ls->nlanes; i++) {
		struct mig_lane *ln = &ls->v[i];
		if (!ln->running)
			continue;
		pthread_join(ln->thread, NULL);
		ln->running = false;
		/* A lane stopped only because another failed is not the reason. */
		if (ln->rc < 0 && (!first || first == -ECANCELED)) {
			if (!e->code || first == -ECANCELED) {
				err__clear(e);
				err__set(e, ln->e.code, "%s", ln->e.msg);
			}
			first = ln->rc;
		}
	}
	return first;
}

int mig_lanes__finish(struct mig_lanes *ls, struct err *e)
{
	for (unsigned i = 0; i + 1 < ls->nlanes; i++) {
		struct mig_lane *ln = &ls->v[i];
		int rc = stream__finish(&ln->w);
		if (!rc)
			rc = stream_stage__flush(&ln->stage);
		if (rc < 0) {
			lane_fail(ln, rc);
			err__set(e, ln->e.code, "%s", ln->e.msg);
			return rc;
		}
	}
	return 0;
}

void mig_lanes__shutdown(struct mig_lanes *ls)
{
	for (unsigned i = 0; ls->v && i + 1 < ls->nlanes; i++)
		channel__shutdown(&ls->v[i].ch);
}

void mig_lanes__close(struct mig_lanes *ls)
{
	struct err ignore = { 0 };
	mig_lanes__shutdown(ls);
	mig_lanes__wait(ls, &ignore);
	for (unsigned i = 0; ls->v && i + 1 < ls->nlanes; i++) {
		struct mig_lane *ln = &ls->v[i];
		if (ln->encoder)
			stream__mem_enc_free(&ln->enc);
		if (ln->writer)
			stream__writer_free(&ln->w);
		if (ln->staging)
			stream_stage__free(&ln->stage);
		channel__close(&ln->ch);
	}
	free(ls->v);
	ls->v = NULL;
}

/* ---- destination ---- */

static ssize_t lane_read(void *opaque, void *buf, size_t len)
{
	struct dest_lane *dl = opaque;
	ssize_t n = channel__read_some(&dl->ch, buf, len);
	if (n > 0)
		dl->bytes += (uint64_t)n;
	return n;
}

static void *reader_thread(void *arg)
{
	struct dest_lane *dl = arg;
	struct migrate_incoming *in = dl->in;
	struct stream_io io = { .read = lane_read, .opaque = dl };
	struct stream_reader r;
	struct stream_mem_dec dec;
	struct release_matrix m;
	struct release_policy pol;
	char prefix[48];
	snprintf(prefix, sizeof(prefix), "channel %u from the source: ", dl->index);
	int rc = release__policy(&m, &pol, &dl->e);
	bool reader = false, decoder = false;
	if (!rc) {
		rc = stream__reader_init(&r, &io);
		reader = rc == 0;
	}
	if (!rc && (rc = stream__read_header(&r, NULL, &pol)) < 0)
		stream__reader_err(&r, rc, prefix, &dl->e);
	if (!rc) {
		rc = stream__mem_dec_init(&dec, &dl->e);
		decoder = rc == 0;
	}
	struct stream_mem_dst dst = { .host = in->vm->mem.base, .npages = in->vm->mem.nr_pages,
				      .written = in->written, .fresh = true };
	struct stream_rec rec;
	while (!rc && (rc = stream__next_record(&r, &rec)) > 0) {
		if (rec.type != STREAM_REC_MEM) {
			rc = err__set(&dl->e, EPROTO, "%sa %s record where only memory may come", prefix,
				      stream__rec_name(rec.type));
			break;
		}
		if ((rc = stream__mem_read(&r, &rec, &dec, &dst)) < 0) {
			stream__reader_err(&r, rc, prefix, &dl->e);
			break;
		}
		if (!dl->mem_records++) {
			char phase[16];
			snprintf(phase, sizeof(phase), "channel%u", dl->index);
			if ((rc = mig_fault__at(in->fault, phase, &dl->ch, in->io_timeout_ms, &dl->e)) < 0)
				break;
		}
		/* Pages of another lane's group race with that lane: a source
		 * that sends them is broken, and the migration fails. */
		uint64_t f = dec.last_first_pfn, n = dec.last_count;
		if (n && (f / MIG_LANE_PAGES != (f + n - 1) / MIG_LANE_PAGES ||
			  mig_lane__of(f, in->nr_lanes + 1) != dl->index)) {
			rc = err__set(&dl->e, EPROTO, "%spages %llu..%llu belong to another channel",
				      prefix, (unsigned long long)f, (unsigned long long)(f + n - 1));
			break;
		}
	}
	if (rc < 0 && !dl->e.code)
		stream__reader_err(&r, rc, prefix, &dl->e);
	if (decoder)
		stream__mem_dec_free(&dec);
	if (reader)
		stream__reader_free(&r);
	dl->rc = rc < 0 ? rc : 0;
	/* The main receiver waits on the first channel: wake it. */
	if (dl->rc < 0) {
		/* Close this lane: the source's sender stops at once and fails
		 * the migration; the receiver on the first channel finds out at
		 * the latest before the state (dest_lanes__join). */
		bool expected = false;
		if (atomic_compare_exchange_strong(&in->lane_failed, &expected, true))
			in->lane_err = dl->e;
		/* Closed with a reset, not shut down: data still arriving would
		 * otherwise fill the window and stall the sender until its
		 * timeout instead of failing it now. */
		pthread_mutex_lock(&dl->lock);
		if (dl->ch.fd >= 0 && dl->ch.kind != CHANNEL_RDMA) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };
			(void)setsockopt(dl->ch.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		channel__close(&dl->ch);
		pthread_mutex_unlock(&dl->lock);
		/* The main receiver may be waiting for the first channel's next
		 * bytes while the source waits there to hear why: end its reading
		 * (not its writing) so that it gives up and says why. */
		if (in->ch.fd >= 0 && in->ch.kind != CHANNEL_RDMA)
			(void)shutdown(in->ch.fd, SHUT_RD);
	}
	return NULL;
}

int dest_lanes__accept(struct migrate_incoming *in, struct channel_listener *l, struct err *e)
{
	if (!in->nr_lanes)
		return 0;
	if (!l)
		return err__set(e, EINVAL, "the source asks for %u channels; this receiver takes one",
				in->nr_lanes + 1);
	in->lanes = calloc(in->nr_lanes, sizeof(*in->lanes));
	if (!in->lanes)
		return err__set(e, ENOMEM, "out of memory");
	for (unsigned i = 0; i < in->nr_lanes; i++) {
		in->lanes[i] = (struct dest_lane){ .in = in, .index = i + 1, .ch = { .fd = -1 } };
		pthread_mutex_init(&in->lanes[i].lock, NULL);
	}
	for (unsigned k = 0; k < in->nr_lanes; k++) {
		struct channel ch = { .fd = -1 };
		struct json_object *join = NULL, *v;
		int rc = channel__accept(l, (int)in->io_timeout_ms, &ch, e);
		if (rc < 0)
			return err__set(e, e->code, "waiting for the source's channel %u: %s", k + 1, e->msg);
		channel__set_timeout(&ch, (int)in->io_timeout_ms);
		rc = mig__recv(&ch, 0, "join", "a channel's join", &join, e);
		const char *token = !rc ? mig__str(join, "token") : NULL;
		int64_t index = !rc && json_object_object_get_ex(join, "index", &v) ?
				json_object_get_int64(v) : -1;
		if (!rc && (!token || strcmp(token, in->token) || index < 1 ||
			    index > (int64_t)in->nr_lanes || in->lanes[index - 1].ch.fd >= 0))
			rc = err__set(e, EPROTO, "a connection from %s that is not one of this "
				      "migration's channels", ch.peer);
		json_object_put(join);
		if (rc < 0) {
			mig__send_error(&ch, e->msg);
			channel__close(&ch);
			return rc;
		}
		struct dest_lane *dl = &in->lanes[index - 1];
		dl->ch = ch;
		if ((rc = mig__send_type(&dl->ch, "joined", e)) < 0)
			return rc;
		int r = pthread_create(&dl->thread, NULL, reader_thread, dl);
		if (r)
			return err__setsys(e, r, "starting the reader of channel %u", dl->index);
		dl->started = true;
	}
	return 0;
}

int dest_lanes__join(struct migrate_incoming *in, struct err *e)
{
	int first = 0;
	for (unsigned i = 0; in->lanes && i < in->nr_lanes; i++) {
		struct dest_lane *dl = &in->lanes[i];
		if (dl->started) {
			pthread_join(dl->thread, NULL);
			dl->started = false;
			in->bytes += dl->bytes;
			in->mem_records += dl->mem_records;
		}
		if (dl->rc < 0 && !first) {
			first = dl->rc;
			err__clear(e);
			err__set(e, dl->e.code ? dl->e.code : EIO, "%s", dl->e.msg);
		}
	}
	return first;
}

void dest_lanes__free(struct migrate_incoming *in)
{
	struct err ignore = { 0 };
	for (unsigned i = 0; in->lanes && i < in->nr_lanes; i++) {
		pthread_mutex_lock(&in->lanes[i].lock);
		channel__shutdown(&in->lanes[i].ch);
		pthread_mutex_unlock(&in->lanes[i].lock);
	}
	dest_lanes__join(in, &ignore);
	for (unsigned i = 0; in->lanes && i < in->nr_lanes; i++) {
		channel__close(&in->lanes[i].ch);
		pthread_mutex_destroy(&in->lanes[i].lock);
	}
	free(in->lanes);
	in->lanes = NULL;
	in->nr_lanes = 0;
}
