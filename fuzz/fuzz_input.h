/* fuzz_input: what the fuzz targets share. Parsers that read a file by path (the AWS
 * credentials/config files, the products file, the pipeline file) get the fuzzer's bytes
 * through an anonymous memory file (memfd) named by its /proc/self/fd path, so they run
 * exactly as `opsline` runs them, through their public entry points, with no disk I/O. */
#ifndef OL_FUZZ_INPUT_H
#define OL_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

/* Replaces the memory file's contents with data[0, size) and returns its path (static
 * storage, stable for the process). Aborts when the file cannot be made or written: a
 * fuzzing run without its input would report nothing while looking green. */
const char *fuzz_input_file(const uint8_t *data, size_t size);

#endif
