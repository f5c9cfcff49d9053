#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/util.h"
#include "vmhop/vm-config.h"

void vm_config__init(struct vm_config *c)
{
	memset(c, 0, sizeof(*c));
	c->mem_size = 512 * MiB;
	c->nr_cpus = 1;
	c->serial = SERIAL_STDIO;
}

void vm_config__free(struct vm_config *c)
{
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	free(c->cpu_model);
	free(c->serial_path);
	free(c->control_path);
	for (unsigned i = 0; i < c->nr_disks; i++)
		free(c->disks[i].path);
	memset(c, 0, sizeof(*c));
}

static bool valid_id(const char *s)
{
	if (!*s || strlen(s) >= DISK_ID_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return false;
	return true;
}

int vm_config__add_disk(struct vm_config *c, const char *spec, struct err *e)
{
	if (c->nr_disks == VM_MAX_DISKS)
		return err__set(e, E2BIG, "--disk: at most %d disks", VM_MAX_DISKS);
	char *copy = strdup(spec);
	if (!copy)
		return err__set(e, ENOMEM, "out of memory");
	struct disk_config d = { .cache_none = true };
	char *save = NULL;
	char *tok = strtok_r(copy, ",", &save);
	if (!tok || !*tok || spec[0] == ',') {
		free(copy);
		return err__set(e, EINVAL, "--disk %s: missing path", spec);
	}
	d.path = strdup(tok);
	snprintf(d.id, sizeof(d.id), "vd%c", 'a' + c->nr_disks);
	int r = 0;
	while (!r && (tok = strtok_r(NULL, ",", &save))) {
		if (!strncmp(tok, "id=", 3)) {
			if (!valid_id(tok + 3))
				r = err__set(e, EINVAL, "--disk %s: bad id '%s' (letters, digits, - and _, at most %d)",
					     spec, tok + 3, DISK_ID_MAX - 1);
			else
				snprintf(d.id, sizeof(d.id), "%s", tok + 3);
		} else if (!strcmp(tok, "cache=none")) {
			d.cache_none = true;
		} else if (!strcmp(tok, "cache=writeback")) {
			d.cache_none = false;
		} else if (!strcmp(tok, "readonly") || !strcmp(tok, "readonly=on")) {
			d.readonly = true;
		} else {
			r = err__set(e, EINVAL, "--disk %s: unknown option '%s' (id=, cache=none|writeback, readonly)",
				     spec, tok);
		}
	}
	free(copy);
	for (unsigned i = 0; !r && i < c->nr_disks; i++)
		if (!strcmp(c->disks[i].id, d.id))
			r = err__set(e, EEXIST, "--disk %s: id '%s' is used twice", spec, d.id);
	if (r || !d.path) {
		free(d.path);
		return r ? r : err__set(e, ENOMEM, "out of memory");
	}
	c->disks[c->nr_disks++] = d;
	return 0;
}

int vm_config__set_serial(struct vm_config *c, const char *spec, struct err *e)
{
	free(c->serial_path);
	c->serial_path = NULL;
	if (!strcmp(spec, "stdio")) {
		c->serial = SERIAL_STDIO;
	} else if (!strcmp(spec, "none")) {
		c->serial = SERIAL_NONE;
	} else if (!strncmp(spec, "file:", 5) && spec[5]) {
		c->serial = SERIAL_FILE;
		c->serial_path = strdup(spec + 5);
		if (!c->serial_path)
			return err__set(e, ENOMEM, "out of memory");
	} else {
		return err__set(e, EINVAL, "--serial %s: expected stdio, none or file:PATH", spec);
	}
	return 0;
}
