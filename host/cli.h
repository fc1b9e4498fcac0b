/* cli: sub-commands and exit codes of the opsline executable. */
#ifndef OL_CLI_H
#define OL_CLI_H

int cli_main(int argc, char **argv);

/* "15m", "3600", "2h", "7d" -> seconds; 0 when malformed. */
unsigned long cli_parse_duration(const char *s);

#endif
