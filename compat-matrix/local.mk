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

# CPU models as data (cpu-models.conf, embedded like release-levels.conf),
# host profiles, and the pre-flight compatibility rules.
libvmhop_a_SOURCES += \
	compat-matrix/cpu-models.c compat-matrix/cpu-models-data.c \
	compat-matrix/host-profile.c compat-matrix/host-profile-json.c \
	compat-matrix/compat.c compat-matrix/compat-vm.c compat-matrix/compat-cpu.c \
	compat-matrix/compat-disk.c compat-matrix/compat-devices.c \
	compat-matrix/compat-release.c compat-matrix/compat-limits.c \
	compat-matrix/compat-guest.c

compat-matrix/cpu-models-data.c: $(srcdir)/compat-matrix/cpu-models.conf $(srcdir)/compat-matrix/embed.sh
	$(AM_V_GEN)$(MKDIR_P) compat-matrix && \
	$(SHELL) $(srcdir)/compat-matrix/embed.sh vmhop_cpu_models_data \
		< $(srcdir)/compat-matrix/cpu-models.conf > $@.tmp && mv $@.tmp $@
CLEANFILES += compat-matrix/cpu-models-data.c
dist_releasedata_DATA += compat-matrix/cpu-models.conf
