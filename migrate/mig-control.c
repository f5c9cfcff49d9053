/* The source's control commands: `migrate` starts the engine on its own
 * thread and replies with the summary when the migration ends;
 * `query-migrate` reports progress at any time. The thread hands its end to
 * the loop with a uv_async_t; the loop joins it, replies, and (once the
 * destination runs the guest) ends this VM as migrated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/mig-source.h"
#include "vmhop/control.h"
#include "vmhop/migrate-fault.h"
#include "vmhop/snapshot.h"
#include "vmhop/util.h"
#include "vmhop/vm.h"

const char *migrate__status_name(enum migrate_status s)
{
	static const char *const names[] = {
		[MIGRATE_NONE] = "none", [MIGRATE_SETUP] = "setup", [MIGRATE_ACTIVE] = "active",
		[MIGRATE_STOPCOPY] = "stop-copy", [MIGRATE_COMMIT] = "commit",
		[MIGRATE_COMPLETED] = "completed", [MIGRATE_FAILED] = "failed",
		[MIGRATE_UNCONFIRMED] = "unconfirmed", [MIGRATE_CHECKED] = "checked",
	};
	return s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

struct json_object *migrate__stats_json(const struct migrate_stats *st,
					struct json_object *preflight)
{
	struct json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	bool ended = st->status == MIGRATE_COMPLETED || st->status == MIGRATE_FAILED ||
		     st->status == MIGRATE_UNCONFIRMED || st->status == MIGRATE_CHECKED;
	uint64_t total = ended ? st->total_ns : (st->start_ns ? util__now_ns() - st->start_ns : 0);
	double eta = st->throughput_mib_s > 0 ?
		     (double)st->remaining_bytes / (st->throughput_mib_s * 1048576.0) * 1000.0 : 0;
	json_object_object_add(o, "status", json_object_new_string(migrate__status_name(st->status)));
	if (st->error[0])
		json_object_object_add(o, "error", json_object_new_string(st->error));
	json_object_object_add(o, "total_ms", json_object_new_double(ms(total)));
	json_object_object_add(o, "setup_ms", json_object_new_double(ms(st->setup_ns)));
	if (st->status == MIGRATE_COMPLETED)
		json_object_object_add(o, "downtime_ms", json_object_new_double(ms(st->downtime_ns)));
	json_object_object_add(o, "rounds", json_object_new_int64((int64_t)st->rounds));
	json_object_object_add(o, "bytes_sent", json_object_new_int64((int64_t)st->bytes_sent));
	json_object_object_add(o, "pages_total", json_object_new_int64((int64_t)st->pages_total));
	json_object_object_add(o, "pages_skipped_zero",
			       json_object_new_int64((int64_t)st->pages_skipped_zero));
	json_object_object_add(o, "pages_sent_raw", json_object_new_int64((int64_t)st->pages_sent_raw));
	json_object_object_add(o, "pages_sent_compressed",
			       json_object_new_int64((int64_t)st->pages_sent_compressed));
	json_object_object_add(o, "remaining_bytes",
			       json_object_new_int64((int64_t)st->remaining_bytes));
	json_object_object_add(o, "throughput_mib_s", json_object_new_double(st->throughput_mib_s));
	json_object_object_add(o, "dirty_rate_mib_s", json_object_new_double(st->dirty_rate_mib_s));
	json_object_object_add(o, "eta_ms", json_object_new_double(ended ? 0 : eta));
	json_object_object_add(o, "throttle_pct", json_object_new_int((int)st->throttle_pct));
	json_object_object_add(o, "id", json_object_new_int64((int64_t)st->id));
	if (st->unsafe)
		json_object_object_add(o, "unsafe", json_object_new_boolean(1));
	if (st->peer[0])
		json_object_object_add(o, "peer", json_object_new_string(st->peer));
	uint64_t disk_bytes = 0;
	struct json_object *disks = json_object_new_array();
	for (unsigned k = 0; disks && k < st->nr_disks; k++) {
		const struct migrate_disk_stats *d = &st->disks[k];
		struct json_object *j = json_object_new_object();
		if (!j)
			break;
		disk_bytes += d->bytes_sent;
		json_object_object_add(j, "id", json_object_new_string(d->id));
		json_object_object_add(j, "mode", json_object_new_string(d->mode));
		json_object_object_add(j, "size", json_object_new_int64((int64_t)d->size));
		json_object_object_add(j, "bytes_sent", json_object_new_int64((int64_t)d->bytes_sent));
		json_object_object_add(j, "rounds", json_object_new_int64((int64_t)d->rounds));
		json_object_object_add(j, "blocks_resent", json_object_new_int64((int64_t)d->blocks_resent));
		json_object_object_add(j, "bulk_ms", json_object_new_double(ms(d->bulk_ns)));
		if (d->sha256_src[0])
			json_object_object_add(j, "sha256_source", json_object_new_string(d->sha256_src));
		if (d->sha256_dst[0])
			json_object_object_add(j, "sha256_destination", json_object_new_string(d->sha256_dst));
		if (d->digests)
			json_object_object_add(j, "verified",
					       json_object_new_boolean(!strcmp(d->sha256_src, d->sha256_dst)));
		json_object_array_add(disks, j);
	}
	json_object_object_add(o, "disk_bytes_sent", json_object_new_int64((int64_t)disk_bytes));
	json_object_object_add(o, "disk_remaining_bytes",
			       json_object_new_int64((int64_t)st->disk_remaining_bytes));
	json_object_object_add(o, "disks", disks);
	if (st->nr_channels > 1) {
		struct json_object *ch = json_object_new_array();
		for (unsigned k = 0; ch && k < st->nr_channels && k < MIGRATE_MAX_CHANNELS; k++) {
			struct json_object *j = json_object_new_object();
			if (!j)
				break;
			json_object_object_add(j, "index", json_object_new_int((int)k));
			json_object_object_add(j, "bytes_sent", json_object_new_int64((int64_t)st->channel_bytes[k]));
			json_object_array_add(ch, j);
		}
		json_object_object_add(o, "channels", ch);
	}
	if (preflight)
		json_object_object_add(o, "preflight", json_object_get(preflight));
	return o;
}

/* tls_ca, tls_cert, tls_key (all three for a tls: uri, none otherwise) and
 * tls_name. */
static int tls_params(struct migrate_params *p, struct json_object *args, bool tls,
		      struct err *e)
{
	static const char *const names[] = { "tls_ca", "tls_cert", "tls_key", "tls_name" };
	char *const dst[] = { p->tls_ca, p->tls_cert, p->tls_key, p->tls_name };
	const size_t size[] = { sizeof(p->tls_ca), sizeof(p->tls_cert), sizeof(p->tls_key),
				sizeof(p->tls_name) };
	char missing[64] = "";
	bool any = false;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		const char *v = NULL;
		int r = control__arg_str(args, "migrate", names[i], size[i] - 1, &v, e);
		if (r < 0)
			return r;
		if (r > 0 && !*v)
			return err__set(e, EINVAL, "migrate: '%s' is empty", names[i]);
		if (r > 0)
			snprintf(dst[i], size[i], "%s", v);
		any |= r > 0;
		if (!r && i < 3) {
			strcat(missing, missing[0] ? ", " : "");
			strcat(missing, names[i]);
		}
	}
	if (tls && missing[0])
		return err__set(e, EINVAL, "migrate: a tls: uri needs tls_ca, tls_cert and tls_key "
				"(missing: %s)", missing);
	if (!tls && any)
		return err__set(e, EINVAL, "migrate: tls_ca, tls_cert, tls_key and tls_name go "
				"with a tls: uri only");
	return 0;
}

/* copy_disks (ids), copy_all_disks, verify_disks, incremental_disks,
 * full_copy_fallback. */
static int disk_params(struct migrate_params *p, struct json_object *args, struct err *e)
{
	struct json_object *a;
	if (json_object_object_get_ex(args, "copy_disks", &a)) {
		if (!json_object_is_type(a, json_type_array))
			return err__set(e, EINVAL, "migrate: 'copy_disks' must be an array of disk ids");
		size_t n = json_object_array_length(a);
		if (n > VM_MAX_DISKS)
			return err__set(e, EINVAL, "migrate: at most %d disks in 'copy_disks'", VM_MAX_DISKS);
		for (size_t i = 0; i < n; i++) {
			struct json_object *v = json_object_array_get_idx(a, i);
			const char *id = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
			if (!id || !*id || strlen(id) >= DISK_ID_MAX)
				return err__set(e, EINVAL, "migrate: 'copy_disks' holds something that is not "
						"a disk id");
			snprintf(p->copy_disks[p->nr_copy_disks++], DISK_ID_MAX, "%s", id);
		}
	}
	int r = control__arg_bool(args, "migrate", "copy_all_disks", &p->copy_all_disks, e);
	if (r >= 0)
		r = control__arg_bool(args, "migrate", "verify_disks", &p->verify_disks, e);
	if (r >= 0)
		r = control__arg_bool(args, "migrate", "incremental_disks", &p->incremental_disks, e);
	if (r >= 0)
		r = control__arg_bool(args, "migrate", "full_copy_fallback", &p->full_copy_fallback, e);
	if (r < 0)
		return r;
	if ((p->verify_disks || p->incremental_disks || p->full_copy_fallback) &&
	    !p->nr_copy_disks && !p->copy_all_disks)
		return err__set(e, EINVAL, "migrate: verify_disks, incremental_disks and "
				"full_copy_fallback go with copy_disks or copy_all_disks");
	return 0;
}

int migrate__params_from_json(struct migrate_params *p, struct json_object *args,
			      struct err *e)
{
	memset(p, 0, sizeof(*p));
	p->max_downtime_ms = MIGRATE_DEFAULT_DOWNTIME_MS;
	p->io_timeout_ms = MIGRATE_DEFAULT_IO_TIMEOUT_MS;
	const char *uri = NULL, *compress = NULL, *fault = NULL;
	uint64_t timeout_s = 0, io_timeout_s = 0;
	int r = control__arg_str(args, "migrate", "uri", sizeof(p->uri) - 1, &uri, e);
	if (r == 0)
		return err__set(e, EINVAL, "migrate: 'uri' (tcp:HOST:PORT, tls:HOST:PORT or "
				"unix:PATH) is required");
	struct channel_addr a;
	if (r > 0)
		r = channel__parse_uri(uri, false, &a, e);
	if (r >= 0 && a.kind == CHANNEL_FILE)
		r = err__set(e, EINVAL, "migrate: %s: a file: channel carries a recorded stream, not "
			     "a live migration (use tcp:, tls: or unix:)", uri);
	if (r >= 0)
		r = control__arg_u64(args, "migrate", "max_downtime_ms", 1, 3600000, &p->max_downtime_ms, e);
	if (r >= 0)
		r = control__arg_u64(args, "migrate", "max_bandwidth", 0, UINT64_MAX / 2,
				     &p->max_bandwidth, e);
	if (r >= 0)
		r = control__arg_str(args, "migrate", "compress", 8, &compress, e);
	if (r >= 0)
		r = control__arg_bool(args, "migrate", "auto_converge", &p->auto_converge, e);
	if (r >= 0)
		r = control__arg_u64(args, "migrate", "timeout", 0, 86400 * 365, &timeout_s, e);
	if (r >= 0 && (r = control__arg_u64(args, "migrate", "io_timeout", 1, 3600, &io_timeout_s, e)) > 0)
		p->io_timeout_ms = io_timeout_s * 1000;
	if (r >= 0)
		r = control__arg_str(args, "migrate", "fault", sizeof(p->fault) - 1, &fault, e);
	if (r >= 0)
		r = control__arg_bool(args, "migrate", "unsafe", &p->unsafe, e);
	if (r >= 0)
		r = control__arg_bool(args, "migrate", "check_only", &p->check_only, e);
	if (r >= 0)
		r = tls_params(p, args, a.kind == CHANNEL_TLS, e);
	if (r >= 0)
		r = disk_params(p, args, e);
	uint64_t channels = 1;
	if (r >= 0)
		r = control__arg_u64(args, "migrate", "channels", 1, MIGRATE_MAX_CHANNELS, &channels, e);
	p->channels = (unsigned)channels;
	if (r < 0)
		return r;
	if (compress && strcmp(compress, "none") && strcmp(compress, "zstd"))
		return err__set(e, EINVAL, "migrate: compress must be none or zstd, not '%s'", compress);
	p->compress = compress && !strcmp(compress, "zstd");
	p->timeout_ms = timeout_s * 1000;
	snprintf(p->uri, sizeof(p->uri), "%s", uri);
	if (fault) {
		if ((r = mig_fault__check(fault, e)) < 0)
			return r == -EPERM ? err__set(e, EINVAL, "%s", e->msg) : r;
		snprintf(p->fault, sizeof(p->fault), "%s", fault);
	}
	return 0;
}

static void *engine_thread(void *arg)
{
	struct migration *m = arg;
	mig_source__run(m);
	uv_async_send(m->done);
	return NULL;
}

static void free_async(uv_handle_t *h)
{
	free(h);
}

static void on_done(uv_async_t *a)
{
	struct migration *m = a->data;
	pthread_join(m->thread, NULL);
	m->thread_started = false;
	m->finished = true;
	m->done = NULL;
	uv_close((uv_handle_t *)a, free_async);

	pthread_mutex_lock(&m->lock);
	struct migrate_stats st = m->st;
	struct json_object *preflight = json_object_get(m->preflight);
	pthread_mutex_unlock(&m->lock);
	struct err e = { 0 };
	int rc = 0;
	if (st.status != MIGRATE_COMPLETED && st.status != MIGRATE_CHECKED)
		rc = err__set(&e, st.status == MIGRATE_UNCONFIRMED ? EIO : ECANCELED, "%s", st.error);
	/* A failure's numbers stay available through query-migrate. */
	struct control_call *call = m->call;
	m->call = NULL;
	if (call)
		control__call_done(call, rc, rc ? NULL : migrate__stats_json(&st, preflight), &e);
	json_object_put(preflight);
	if (st.status == MIGRATE_COMPLETED) {
		char why[CHANNEL_URI_MAX + 32];
		snprintf(why, sizeof(why), "migrated to %s", m->p.uri);
		vm__stop(m->vm, VM_MIGRATED, why);
	}
}

int migrate__control_start(void *ctx, struct json_object *args, struct control_call *call,
			   struct err *e)
{
	struct vm *vm = ctx;
	struct migrate_params p;
	int r = migrate__params_from_json(&p, args, e);
	if (r < 0)
		return r;
	struct migration *old = vm->migration;
	if (old && !old->finished)
		return err__set(e, EBUSY, "a migration of this VM is already %s",
				migrate__status_name(old->st.status));
	enum vm_state s = vm__state(vm);
	if (s != VM_RUNNING && !(p.check_only && s == VM_PAUSED))
		return err__set(e, EBUSY, "migrate: the VM is %s; only a running VM migrates live%s",
				vm__state_name(s), s == VM_PAUSED ? " (resume it first)" : "");
	struct migration *m = calloc(1, sizeof(*m));
	uv_async_t *done = calloc(1, sizeof(*done));
	if (!m || !done || uv_async_init(control__call_loop(call), done, on_done)) {
		free(m);
		free(done);
		return err__set(e, ENOMEM, "migrate: cannot set up the migration");
	}
	m->vm = vm;
	m->p = p;
	m->ch.fd = -1;
	m->done = done;
	done->data = m;
	pthread_mutex_init(&m->lock, NULL);
	m->st.status = MIGRATE_SETUP;
	m->st.start_ns = util__now_ns();
	m->st.pages_total = vm->mem.nr_pages;
	m->st.id = old ? old->st.id + 1 : 1;
	m->st.unsafe = p.unsafe;
	/* The migration needs the dirty log: checkpoint chains start over. */
	if (!p.check_only)
		snapshot__track_drop(vm);
	r = pthread_create(&m->thread, NULL, engine_thread, m);
	if (r) {
		uv_close((uv_handle_t *)done, free_async);
		pthread_mutex_destroy(&m->lock);
		free(m);
		return err__setsys(e, r, "migrate: starting the migration thread");
	}
	m->thread_started = true;
	m->call = call;
	if (old) {
		json_object_put(old->preflight);
		pthread_mutex_destroy(&old->lock);
		free(old);
	}
	vm->migration = m;
	return 0;
}

int migrate__control_cancel(void *ctx, struct json_object *args, struct json_object **result,
			    struct err *e)
{
	struct vm *vm = ctx;
	(void)args;
	(void)result;
	struct migration *m = vm->migration;
	if (!m || m->finished || !m->thread_started)
		return err__set(e, EINVAL, "migrate-cancel: no migration is running");
	/* The commit cannot be taken back once go may have left. */
	if (!mig_source__abort(m, true))
		return err__set(e, EBUSY, "migrate-cancel: the migration is committing; too late to cancel");
	return 0;
}

int migrate__control_query(void *ctx, struct json_object *args, struct json_object **result,
			   struct err *e)
{
	struct vm *vm = ctx;
	(void)args;
	struct migrate_stats st = { .status = MIGRATE_NONE };
	struct json_object *preflight = NULL;
	struct migration *m = vm->migration;
	if (m) {
		pthread_mutex_lock(&m->lock);
		st = m->st;
		preflight = json_object_get(m->preflight);
		pthread_mutex_unlock(&m->lock);
	}
	*result = migrate__stats_json(&st, preflight);
	json_object_put(preflight);
	return *result ? 0 : err__set(e, ENOMEM, "out of memory");
}

void migrate__vm_ended(struct vm *vm)
{
	struct migration *m = vm->migration;
	if (m && m->thread_started)
		mig_source__abort(m, false);
}

void migrate__destroy(struct vm *vm)
{
	struct migration *m = vm->migration;
	if (!m)
		return;
	if (m->thread_started) {
		mig_source__abort(m, false);
		pthread_join(m->thread, NULL);
	}
	json_object_put(m->preflight);
	pthread_mutex_destroy(&m->lock);
	free(m);
	vm->migration = NULL;
}
