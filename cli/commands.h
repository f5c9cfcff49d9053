/* Subcommands of the vmhop binary: one file each, `cmd_NAME(argc, argv)`
 * with argv[0] being the subcommand name. They return the process exit code. */
#ifndef VMHOP_CLI_COMMANDS_H
#define VMHOP_CLI_COMMANDS_H

int cmd_run(int argc, char **argv);
int cmd_ctl(int argc, char **argv);
int cmd_stream_info(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_snapshot_schedule(int argc, char **argv);
int cmd_migrate_send(int argc, char **argv);
int cmd_migrate_recv(int argc, char **argv);
int cmd_host_profile(int argc, char **argv);
int cmd_compat_check(int argc, char **argv);
int cmd_agent(int argc, char **argv);
int cmd_evacuate(int argc, char **argv);

#endif
