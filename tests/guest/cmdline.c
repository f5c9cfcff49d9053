/*
 * cmdline.c: parse "seconds=N dirty=SIZE rate=SIZE passes=N verify=0|1 disk=...
 * disk_mib=N disk_loop=0|1 disks=N disk_rate=SIZE hb=MS smp=N".
 */
#include "cmdline.h"
#include "layout.h"
#include "lib.h"
#include "virtio_blk.h"

struct word {
	const char *key, *val;
	unsigned klen, vlen;
};

static bool key_is(const struct word *w, const char *k)
{
	return strlen(k) == w->klen && !memcmp(w->key, k, w->klen);
}

static bool val_is(const struct word *w, const char *v)
{
	return strlen(v) == w->vlen && !memcmp(w->val, v, w->vlen);
}

/* Decimal with an optional K/M/G/T suffix (powers of 1024, optional "B" or "iB"). */
static bool parse_size(const struct word *w, bool suffix, uint64_t *out)
{
	uint64_t v = 0, mul = 1;
	unsigned i = 0;

	if (!w->vlen)
		return false;
	for (; i < w->vlen && w->val[i] >= '0' && w->val[i] <= '9'; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(w->val[i] - '0');
	}
	if (i == 0)
		return false;
	if (i < w->vlen && suffix) {
		switch (w->val[i] | 0x20) {
		case 'k': mul = KIB; break;
		case 'm': mul = MIB; break;
		case 'g': mul = GIB; break;
		case 't': mul = 1024 * GIB; break;
		default: return false;
		}
		i++;
		if (i < w->vlen && w->val[i] == 'i')
			i++;
		if (i < w->vlen && (w->val[i] | 0x20) == 'b')
			i++;
	}
	if (i != w->vlen || (v && mul > UINT64_MAX / v))
		return false;
	*out = v * mul;
	return true;
}

static bool parse_bool(const struct word *w, bool *out)
{
	if (val_is(w, "0") || val_is(w, "no") || val_is(w, "off")) {
		*out = false;
		return true;
	}
	if (val_is(w, "1") || val_is(w, "yes") || val_is(w, "on")) {
		*out = true;
		return true;
	}
	return false;
}

static bool apply(const struct word *w, struct params *p)
{
	if (key_is(w, "seconds"))
		return parse_size(w, false, &p->seconds);
	if (key_is(w, "dirty"))
		return parse_size(w, true, &p->dirty);
	if (key_is(w, "rate"))
		return parse_size(w, true, &p->rate);
	if (key_is(w, "verify"))
		return parse_bool(w, &p->verify);
	if (key_is(w, "passes"))
		return parse_size(w, false, &p->passes);
	if (key_is(w, "disk_mib"))
		return parse_size(w, false, &p->disk_mib) && p->disk_mib > 0 &&
		       p->disk_mib <= 1024 * 1024;
	if (key_is(w, "disk_loop"))
		return parse_bool(w, &p->disk_loop);
	if (key_is(w, "disks"))
		return parse_size(w, false, &p->disks) && p->disks <= VIRTIO_BLK_MAX;
	if (key_is(w, "disk_rate"))
		return parse_size(w, true, &p->disk_rate);
	if (key_is(w, "smp"))
		return parse_size(w, false, &p->smp) && p->smp >= 1 && p->smp <= MAX_CPUS;
	if (key_is(w, "hb"))
		return parse_size(w, false, &p->hb_ms) && p->hb_ms > 0;
	if (key_is(w, "disk")) {
		if (val_is(w, "none"))
			p->disk = DISK_NONE;
		else if (val_is(w, "rw"))
			p->disk = DISK_RW;
		else if (val_is(w, "ro"))
			p->disk = DISK_RO;
		else
			return false;
		return true;
	}
	return true;	/* not ours: the command line may carry other guests' keys */
}

int cmdline__parse(const char *s, struct params *p, char *err, unsigned errlen)
{
	*p = (struct params){ .verify = true, .disk = DISK_NONE, .disk_mib = 4, .hb_ms = 100,
			      .smp = 1 };

	while (*s) {
		struct word w = { 0 };
		const char *start;

		while (*s == ' ' || *s == '\t' || *s == '\n')
			s++;
		start = s;
		while (*s && *s != ' ' && *s != '\t' && *s != '\n')
			s++;
		if (s == start)
			break;
		w.key = start;
		while (w.key + w.klen < s && w.key[w.klen] != '=')
			w.klen++;
		if (w.key + w.klen == s)
			continue;	/* a word without '=' (QEMU puts the kernel's path first) */
		w.val = w.key + w.klen + 1;
		w.vlen = (unsigned)(s - w.val);
		if (!apply(&w, p)) {
			char word[64];
			unsigned n = (unsigned)(s - start);

			if (n >= sizeof(word))
				n = sizeof(word) - 1;
			memcpy(word, start, n);
			word[n] = '\0';
			fmt__snprintf(err, errlen, "cmdline: bad value in '%s'", word);
			return -1;
		}
	}
	return 0;
}

const char *cmdline__disk_name(enum disk_mode m)
{
	return m == DISK_RW ? "rw" : m == DISK_RO ? "ro" : "none";
}
