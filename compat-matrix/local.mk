# compat-matrix/: release levels as data. release-levels.conf is compiled into
# the binary (embed.sh makes it a C array) and installed for reading.
libvmhop_a_SOURCES += compat-matrix/release.c compat-matrix/release-data.c

compat-matrix/release-data.c: $(srcdir)/compat-matrix/release-levels.conf $(srcdir)/compat-matrix/embed.sh
	$(AM_V_GEN)$(MKDIR_P) compat-matrix && \
	$(SHELL) $(srcdir)/compat-matrix/embed.sh vmhop_release_data \
		< $(srcdir)/compat-matrix/release-levels.conf > $@.tmp && mv $@.tmp $@
CLEANFILES += compat-matrix/release-data.c

releasedatadir = $(pkgdatadir)
dist_releasedata_DATA = compat-matrix/release-levels.conf
EXTRA_DIST += compat-matrix/embed.sh compat-matrix/README.md
