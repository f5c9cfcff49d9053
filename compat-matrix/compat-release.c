/* Release rules: the move is allowed by the release matrix (same or newer
 * level only; never overridable), and the destination reads the stream
 * format the source writes. */
#include <stdio.h>

#include "vmhop/compat.h"

void compat_rule__release(struct compat_ctx *c)
{
	const struct release_matrix *m = c->matrix;
	const struct host_profile *s = c->src, *d = c->dst;
	const struct release_level *sl = release__find(m, s->release);
	const struct release_level *dl = release__find(m, d->release);
	static const char upgrade[] =
		"choose a destination at the source's release level or newer (--unsafe does not override this)";
	if (!sl || !dl) {
		compat__row(c, "release", COMPAT_FAIL, "upgrade vmhop on this host so it knows both levels",
			    "release level %s of the %s is unknown to this host's matrix",
			    !sl ? s->release : d->release, !sl ? "source" : "destination");
		return;
	}
	if (sl->ordinal != s->release_ordinal || dl->ordinal != d->release_ordinal) {
		compat__row(c, "release", COMPAT_FAIL, "use vmhop builds with the same release data",
			    "release level numbers do not match this host's matrix (%s %u, %s %u)",
			    s->release, s->release_ordinal, d->release, d->release_ordinal);
		return;
	}
	if (!release__allowed(m, sl, dl)) {
		char acc[128];
		release__accepts(m, dl, acc, sizeof(acc));
		compat__row(c, "release", COMPAT_FAIL, upgrade,
			    "release %s -> %s: %s (%s accepts %s)", sl->name, dl->name,
			    dl->ordinal < sl->ordinal ? "moving to an older release level is refused" :
			    "not allowed by the release matrix", dl->name, acc);
		return;
	}
	compat__row(c, "release", COMPAT_PASS, NULL, "release %s -> %s allowed by the matrix",
		    sl->name, dl->name);
}

void compat_rule__stream_format(struct compat_ctx *c)
{
	const struct host_profile *s = c->src, *d = c->dst;
	if (s->format_write < d->format_read_min || s->format_write > d->format_read_max)
		compat__row(c, "stream-format", COMPAT_FAIL,
			    "choose a destination whose vmhop reads this format (a newer release)",
			    "stream format %u (written by %s) is not readable by the destination (%s reads %u..%u)",
			    s->format_write, s->release, d->release, d->format_read_min, d->format_read_max);
	else
		compat__row(c, "stream-format", COMPAT_PASS, NULL,
			    "stream format %u readable by the destination (reads %u..%u)",
			    s->format_write, d->format_read_min, d->format_read_max);
}
