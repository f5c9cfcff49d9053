# man/: a page for every command and file format.
dist_man_MANS += man/vmhop.1 man/vmhop-run.1 man/vmhop-snapshot.1
dist_man_MANS += man/vmhop-ctl.1
dist_man_MANS += man/vmhop-migrate-send.1 man/vmhop-migrate-recv.1
dist_man_MANS += man/vmhop-stream.5
dist_man_MANS += man/vmhop-compat-check.1 man/vmhop-host-profile.1 man/vmhop-compat-matrix.5
dist_man_MANS += man/vmhop-transports.7
dist_man_MANS += man/vmhop-agent.1 man/vmhop-evacuate.1
