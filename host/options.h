/* options: one stage instance's option values, parsed and validated against the options
 * the stage declares (ol_option_def): unknown names (with a "did you mean" suggestion),
 * wrong types and malformed defaults are rejected before any request is sent. */
#ifndef OL_OPTIONS_H
#define OL_OPTIONS_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "opsline/opsline.h"

typedef struct options options;

/* Values from a JSON object (may be NULL: defaults only). stage_label names the stage in
 * messages ("stage 'bucket' in pipeline.json"). Returns 0 or OL_EINVAL with a malloc'd
 * *err naming the option, the expected type and the fix. */
int options_parse(const ol_plugin *p, const json_t *obj, const char *stage_label, options **out,
                  char **err);

/* Set one option from text (command line `--set stage.name=value`): bool accepts
 * true/false/yes/no/1/0/on/off, int decimal, list comma-separated, object k=v,k2=v2. */
int options_set_text(options *o, const char *name, const char *text, char **err);

/* Set options from a JSON object {"name": value, ...}, as the pipeline file does. */
int options_apply_json(options *o, const json_t *obj, char **err);

/* A deep copy of o whose messages name label (NULL: o's label). OL_ENOMEM or 0. */
int options_clone(const options *o, const char *label, options **out);

const char *options_string(const options *o, const char *name);
int options_bool(const options *o, const char *name);
long long options_int(const options *o, const char *name);
size_t options_list(const options *o, const char *name, const char *const **out);
size_t options_map(const options *o, const char *name, const ol_kv **out);
int options_is_set(const options *o, const char *name);
/* The i-th option declaration of p, walked with the plugin's own option_size. */
const ol_option_def *options_def(const ol_plugin *p, size_t i);
/* Fill the OL_OPT_BIND fields of the struct at base (see ol_option_def). */
int options_bind(const options *o, void *base);
void options_free(options *o);

/* `opsline plugins show`: name, version, description, needs, and a table of options with
 * type, default and help (sensitive defaults masked). */
void options_describe(const ol_plugin *p, const char *path, FILE *out);

#endif
