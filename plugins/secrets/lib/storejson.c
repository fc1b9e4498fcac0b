/* storejson: wiping jansson trees (see storejson.h). */
#include "storejson.h"

void storejson_wipe(const ol_host *h, json_t *v) {
    if (json_is_string(v)) {
        h->wipe((char *)json_string_value(v), json_string_length(v));
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            storejson_wipe(h, json_array_get(v, i));
    } else if (json_is_object(v)) {
        const char *key;
        json_t *member;
        json_object_foreach(v, key, member) storejson_wipe(h, member);
    }
}

void storejson_free(const ol_host *h, json_t *v) {
    if (v == NULL)
        return;
    storejson_wipe(h, v);
    json_decref(v);
}

const char *storejson_str(const json_t *obj, const char *key) {
    return json_string_value(json_object_get(obj, key));
}
