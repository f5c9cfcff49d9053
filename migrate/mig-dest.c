/* The destination's side of a migration: hello, the stream into a VM built
 * from the stream's own vm-config section, ready, and waiting for go. The VM
 * is started by the caller only after go, so a source that never says go
 * leaves nothing running here. On any failure the source hears the reason
 * in an error message before the connection closes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "migrate/disk-copy.h"
#include "migrate/mig-lanes.h"
#include "vmhop/compat.h"
#include "vmhop/disk-sections.h"
#include "vmhop/host-profile.h"
#include "vmhop/log.h"
#include "vmhop/migrate-fault.h"
#include "vmhop/migrate-proto.h"
#include "vmhop/migrate.h"
#include "vmhop/release.h"
#include "vmhop/section.h"
#include "vmhop/stream.h"
#include "vmhop/util.h"
#include "vmhop/vm-config.h"
#include "vmhop/vm-sections.h"
#include "vmhop/vm.h"

static ssize_t io_read(void *opaque, void *buf, size_t len)
{
	struct migrate_incoming *in = opaque;
	ssize_t n = channel__read_some(&in->ch, buf, len);
	if (n > 0)
		in->bytes += (uint64_t)n;
	return n;
}

static int reader_err(struct stream_reader *r, int rc, struct err *e)
{
	return stream__reader_err(r, rc, "stream from the source: ", e);
}

/* This host's profile and its view of the VM's disks (at their mapped
 * paths), for the source's pre-flight rules. A test may stand in a recorded
 * profile for this host's (VMHOP_HOST_PROFILE, with the test hooks on). */
static struct json_object *own_profile(struct json_object *peer, const struct migrate_recv_opts *o,
				       struct err *e)
{
	struct host_profile *p = malloc(sizeof(*p));
	struct vm_config vm;
	struct compat_vm_ext ext;
	struct json_object *vmj, *out = NULL;
	const char *stand_in = getenv("VMHOP_HOST_PROFILE"), *hooks = getenv(MIGRATE_TEST_HOOKS_ENV);
	char *maps[VM_MAX_DISKS * 2] = { 0 };
	size_t nmap = 0;
	vm_config__init(&vm);
	int rc = p ? 0 : err__set(e, ENOMEM, "out of memory");
	if (!rc && stand_in && hooks && !strcmp(hooks, "1"))
		rc = host_profile__load(stand_in, p, e);
	else if (!rc)
		rc = host_profile__collect(p, e);
	if (!rc && json_object_object_get_ex(peer, "vm", &vmj))
		rc = compat__vm_from_json(vmj, &vm, &ext, e);
	for (unsigned k = 0; !rc && k < o->nr_maps && nmap < sizeof(maps) / sizeof(*maps); k++) {
		size_t n = strlen(o->map_from[k]) + strlen(o->map_to[k]) + 2;
		if (!(maps[nmap] = malloc(n)))
			rc = err__set(e, ENOMEM, "out of memory");
		else
			snprintf(maps[nmap++], n, "%s=%s", o->map_from[k], o->map_to[k]);
	}
	if (!rc)
		rc = host_profile__view_disks(p, &vm, (const char *const *)maps, nmap, e);
	if (!rc && host_profile__to_json(p, &out) < 0)
		err__set(e, ENOMEM, "out of memory");
	for (size_t k = 0; k < nmap; k++)
		free(maps[k]);
	vm_config__free(&vm);
	free(p);
	return out;
}

/* --channels on the source: how many, and the token its further channels
 * prove themselves with. */
static int lanes_from_hello(struct migrate_incoming *in, struct json_object *peer, struct err *e)
{
	struct json_object *v;
	if (!json_object_object_get_ex(peer, "channels", &v))
		return 0;
	int64_t n = json_object_get_int64(v);
	const char *token = mig__str(peer, "token");
	if (n < 1 || n > MIGRATE_MAX_CHANNELS || !token || strlen(token) != MIG_TOKEN_LEN)
		return err__set(e, EPROTO, "the source asks for %lld channels (1 to %d, with a token)",
				(long long)n, MIGRATE_MAX_CHANNELS);
	in->nr_lanes = (unsigned)n - 1;
	snprintf(in->token, sizeof(in->token), "%s", token);
	return 0;
}

/* Our hello always carries this host's profile, so the source can tell the
 * operator everything that is wrong; a source whose release level may not
 * move here is then refused all the same. */
static int handshake(struct migrate_incoming *in, const struct migrate_recv_opts *o,
		     struct err *e)
{
	struct json_object *peer = NULL;
	int rc = mig__recv(&in->ch, 0, "hello", "the source's hello", &peer, e);
	if (rc < 0)
		return rc;
	struct err refusal = { 0 };
	int verdict = mig__check_hello(peer, "source", &refusal);
	struct json_object *hello = mig__hello("destination", e);
	struct json_object *prof = hello ? own_profile(peer, o, e) : NULL;
	bool probe = mig__flag(peer, "probe");
	if (prof && verdict == 0 && (rc = lanes_from_hello(in, peer, e)) < 0) {
		json_object_put(peer);
		json_object_put(prof);
		json_object_put(hello);
		return rc;
	}
	/* Where copied disks go, decided (and their files created) before our
	 * hello: a refusal names the disk and the path before anything moves. */
	if (prof && verdict == 0 && (rc = disk_recv__plan(in->disks, peer, o, probe, e)) < 0) {
		json_object_put(peer);
		json_object_put(prof);
		json_object_put(hello);
		return rc;
	}
	json_object_put(peer);
	if (!prof) {
		json_object_put(hello);
		return -(e->code ? e->code : ENOMEM);
	}
	json_object_object_add(hello, "profile", prof);
	if (in->disks->n)
		json_object_object_add(hello, "disks", disk_recv__reply(in->disks));
	rc = mig__send(&in->ch, hello, e);
	json_object_put(hello);
	if (rc < 0)
		return rc;
	/* A check is answered whatever its verdict: the source's rules say
	 * what is wrong, and the real migration may still come. */
	if (probe)
		return MIGRATE_PROBED;
	if (verdict < 0) {
		err__set(e, refusal.code, "%s", refusal.msg);
		return verdict;
	}
	return mig_fault__at(in->fault, "hello", &in->ch, in->io_timeout_ms, e);
}

static int apply_opts(struct vm_config *cfg, const struct migrate_recv_opts *o,
		      const struct disk_recv *dr, struct err *e)
{
	/* The console and control socket belong to this process, not the
	 * source's; disks keep their paths unless mapped. */
	int rc = vm_config__set_serial(cfg, o->serial ? o->serial : "stdio", e);
	if (rc < 0)
		return rc;
	free(cfg->control_path);
	cfg->control_path = o->control ? strdup(o->control) : NULL;
	if (o->control && !cfg->control_path)
		return err__set(e, ENOMEM, "out of memory");
	for (unsigned i = 0; i < cfg->nr_disks; i++)
		for (unsigned k = 0; k < o->nr_maps; k++)
			if (!strcmp(cfg->disks[i].path, o->map_from[k])) {
				char *to = strdup(o->map_to[k]);
				if (!to)
					return err__set(e, ENOMEM, "out of memory");
				free(cfg->disks[i].path);
				cfg->disks[i].path = to;
				break;
			}
	return disk_recv__apply(dr, cfg, e);
}

/* The first record: the VM's configuration, from which the VM is built. */
static int build_vm(struct migrate_incoming *in, struct stream_reader *r,
		    const struct migrate_recv_opts *o, struct err *e)
{
	uint8_t *payload = NULL;
	uint32_t len = 0;
	uint64_t base = 0;
	in->cfg = calloc(1, sizeof(*in->cfg));
	if (!in->cfg)
		return err__set(e, ENOMEM, "out of memory");
	vm_config__init(in->cfg);
	int rc = vm_sections__read_config(r, in->cfg, &payload, &len, &base, e);
	if (!rc)
		rc = apply_opts(in->cfg, o, in->disks, e);
	if (!rc)
		rc = vm__create_incoming(&in->vm, in->cfg, e);
	/* The configuration section counts as loaded into the new VM too. */
	if (!rc)
		rc = section__decode(vm_sections__registry(in->vm), payload, len, base, e);
	free(payload);
	return rc;
}

/* NOTE records mark the source's rounds: the test hooks key on them. */
static int on_note(struct migrate_incoming *in, struct stream_reader *r, struct err *e)
{
	uint8_t *text = NULL;
	int rc = stream__read_payload(r, STREAM_NOTE_MAX, &text);
	if (rc < 0)
		return reader_err(r, rc, e);
	unsigned long long round;
	char buf[32] = "";
	if (text)
		snprintf(buf, sizeof(buf), "%.*s", (int)MIN(r->rec.len, sizeof(buf) - 1), (char *)text);
	free(text);
	if (sscanf(buf, "round %llu", &round) == 1) {
		in->rounds = round;
		bool final = strstr(buf, "final") != NULL;
		/* The last round's disk data becomes durable while the source
		 * works on the next: little is left to sync in the pause. */
		if ((rc = disk_recv__sync(in->disks, e)) < 0)
			return rc;
		if (round == 1)
			return mig_fault__at(in->fault, "round1", &in->ch, in->io_timeout_ms, e);
		if (round == 2 && !final)
			return mig_fault__at(in->fault, "precopy", &in->ch, in->io_timeout_ms, e);
	}
	return 0;
}

/* Disk sections go to the copies; the rest is the VM's state, which
 * begins once the vCPUs stopped on the source. */
static int on_section(struct migrate_incoming *in, struct stream_reader *r,
		      const struct stream_rec *rec, struct section_registry *reg,
		      bool *state_started, struct err *e)
{
	uint8_t *p;
	uint64_t base = rec->off + STREAM_REC_HDR_SIZE;
	int rc = stream__read_payload(r, STREAM_SECTION_MAX, &p);
	if (rc)
		return reader_err(r, rc, e);
	/* No state before every channel's memory is in. */
	if (!*state_started && !disk_sections__is_disk(p, rec->len, base) &&
	    (rc = dest_lanes__join(in, e)) < 0) {
		free(p);
		return rc;
	}
	if (disk_sections__is_disk(p, rec->len, base)) {
		bool first = in->disks->n && !in->disk_records++;
		rc = disk_recv__section(in->disks, p, rec->len, base, e);
		if (!rc && first)
			rc = mig_fault__at(in->fault, "disk", &in->ch, in->io_timeout_ms, e);
	} else {
		if (!*state_started)
			rc = mig_fault__at(in->fault, "stopcopy", &in->ch, in->io_timeout_ms, e);
		*state_started = true;
		if (!rc)
			rc = section__decode(reg, p, rec->len, base, e);
	}
	free(p);
	return rc;
}

static int load_stream(struct migrate_incoming *in, struct stream_reader *r, struct err *e)
{
	struct stream_mem_dec dec;
	int rc = stream__mem_dec_init(&dec, e);
	if (rc < 0)
		return rc;
	struct stream_mem_dst dst = { .host = in->vm->mem.base, .npages = in->vm->mem.nr_pages,
				      .written = in->written, .fresh = true };
	struct section_registry *reg = vm_sections__registry(in->vm);
	bool state_started = false;
	struct stream_rec rec;
	while ((rc = stream__next_record(r, &rec)) > 0) {
		if (rec.type == STREAM_REC_MEM) {
			in->mem_records++;
			rc = stream__mem_read(r, &rec, &dec, &dst);
			if (rc < 0)
				rc = reader_err(r, rc, e);
		} else if (rec.type == STREAM_REC_SECTION) {
			rc = on_section(in, r, &rec, reg, &state_started, e);
		} else if (rec.type == STREAM_REC_NOTE) {
			rc = on_note(in, r, e);
		} else {
			rc = stream__rec_skip(r);
			if (rc < 0)
				rc = reader_err(r, rc, e);
		}
		if (rc < 0)
			break;
	}
	if (rc < 0 && !e->code)
		reader_err(r, rc, e);
	stream__mem_dec_free(&dec);
	if (!rc)
		rc = dest_lanes__join(in, e);
	if (rc < 0)
		return rc;
	return section__check_all_loaded(reg, e);
}

/* Tells the source why, then lets it read that before the connection goes:
 * closing with its data unread would reset the connection and lose it. */
static void refuse(struct migrate_incoming *in, const struct err *e)
{
	if (in->ch.fd < 0)
		return;
	mig__send_error(&in->ch, e->msg);
	(void)shutdown(in->ch.fd, SHUT_WR);
	char sink[65536];
	uint64_t until = util__now_ns() + 2000000000ULL;
	channel__set_timeout(&in->ch, 200);
	while (util__now_ns() < until && channel__read_some(&in->ch, sink, sizeof(sink)) > 0)
		;
}

static int send_ready(struct migrate_incoming *in, struct err *e)
{
	struct json_object *m = json_object_new_object();
	if (!m)
		return err__set(e, ENOMEM, "out of memory");
	json_object_object_add(m, "type", json_object_new_string("ready"));
	if (in->disks->n)
		json_object_object_add(m, "disks", disk_recv__ready(in->disks));
	int rc = mig__send(&in->ch, m, e);
	json_object_put(m);
	return rc;
}

/* After go: fallback copies take the old copies' place, under their names. */
static int commit_disks(struct migrate_incoming *in, struct err *e)
{
	char finals[VM_MAX_DISKS][4096];
	unsigned idx[VM_MAX_DISKS], n = 0;
	for (unsigned k = 0; k < in->disks->n; k++)
		if (in->disks->d[k].final[0]) {
			idx[n] = in->disks->d[k].index;
			snprintf(finals[n++], sizeof(finals[0]), "%s", in->disks->d[k].final);
		}
	int rc = disk_recv__commit(in->disks, e);
	for (unsigned k = 0; !rc && k < n; k++) {
		char *p = strdup(finals[k]);
		if (!p)
			return err__set(e, ENOMEM, "out of memory");
		free(in->cfg->disks[idx[k]].path);
		in->cfg->disks[idx[k]].path = p;
	}
	return rc;
}

int migrate__incoming(struct migrate_incoming *in, const struct migrate_recv_opts *o,
		      struct err *e)
{
	in->fault = o->fault;
	in->io_timeout_ms = o->io_timeout_ms;
	in->disks = calloc(1, sizeof(*in->disks));
	if (!in->disks)
		return err__set(e, ENOMEM, "out of memory");
	channel__set_timeout(&in->ch, (int)o->io_timeout_ms);
	struct release_matrix m;
	struct release_policy pol;
	struct stream_io io = { .read = io_read, .opaque = in };
	struct stream_reader r;
	bool reader = false;
	int rc = release__policy(&m, &pol, e);
	if (!rc)
		rc = handshake(in, o, e);
	if (rc == MIGRATE_PROBED) {
		channel__close(&in->ch);
		free(in->disks);
		in->disks = NULL;
		return rc;
	}
	if (!rc) {
		rc = stream__reader_init(&r, &io);
		reader = true;
	}
	if (!rc && (rc = stream__read_header(&r, NULL, &pol)) < 0)
		reader_err(&r, rc, e);
	if (!rc)
		rc = build_vm(in, &r, o, e);
	if (!rc && !(in->written = calloc((in->vm->mem.nr_pages + 63) / 64, sizeof(uint64_t))))
		rc = err__set(e, ENOMEM, "out of memory");
	if (!rc)
		rc = dest_lanes__accept(in, o->listener, e);
	if (!rc)
		rc = load_stream(in, &r, e);
	if (reader)
		stream__reader_free(&r);
	/* Copied disks durable (and compared) before we say ready. */
	if (!rc)
		rc = disk_recv__finish(in->disks, e);
	if (!rc)
		rc = send_ready(in, e);
	if (!rc)
		rc = mig_fault__at(in->fault, "ready", &in->ch, in->io_timeout_ms, e);
	struct json_object *go = NULL;
	if (!rc)
		rc = mig__recv(&in->ch, 0, "go", "the source's go", &go, e);
	json_object_put(go);
	if (!rc)
		rc = mig_fault__at(in->fault, "go", &in->ch, in->io_timeout_ms, e);
	if (!rc)
		rc = commit_disks(in, e);
	if (rc < 0) {
		if (!e->code)
			err__set(e, -rc, "%s", strerror(-rc));
		/* A channel that failed first is the cause of what followed; the
		 * source hears it before the other channels close. */
		if (atomic_load(&in->lane_failed)) {
			err__clear(e);
			err__set(e, in->lane_err.code ? in->lane_err.code : EIO, "%s", in->lane_err.msg);
		}
		refuse(in, e);
		migrate__incoming_free(in);
	}
	return rc;
}

int migrate__incoming_running(struct migrate_incoming *in, struct err *e)
{
	int rc = mig__send_type(&in->ch, "running", e);
	channel__close(&in->ch);
	return rc;
}

void migrate__incoming_free(struct migrate_incoming *in)
{
	dest_lanes__free(in);
	vm__destroy(in->vm);
	in->vm = NULL;
	free(in->written);
	in->written = NULL;
	/* Before go: the copies we created go too (after go there are none
	 * left to remove: disk_recv__commit forgot them). */
	if (in->disks) {
		disk_recv__abort(in->disks);
		free(in->disks);
		in->disks = NULL;
	}
	if (in->cfg) {
		vm_config__free(in->cfg);
		free(in->cfg);
		in->cfg = NULL;
	}
	channel__close(&in->ch);
}
