/* fuzz_schema.c - libFuzzer harness over Avro schema text with Veil's
 * annotations (pii, confluent:tags) and the registry's metadata tags, as a
 * worker gets them from the schema registry: parse (veil_schema_parse),
 * classify every field, compile the plan of every purpose of
 * config/veil.yaml and parse the derived schema back. Built by
 * scripts/fuzz.sh:
 *
 *   scripts/fuzz.sh fuzz_schema        (FUZZ_SECONDS, default 20)
 *
 * Input: schema text, optionally followed by a 0x00 byte and the metadata
 * object as JSON text ({"tags": {"PATH": ["TAG"]}}). Each part sits in a
 * buffer of exactly its size. Checked: parse fails with a message or gives
 * fields that veil_schema_field finds by path; a plan compiles or fails
 * with a message; a compiled plan's derived schema parses again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "plan.h"
#include "policy.h"
#include "schema.h"
#include "util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        fprintf(stderr, "fuzz_schema: %s:%d: %s\n", __FILE__,  \
                                __LINE__, #cond);                              \
                        abort();                                               \
                }                                                              \
        } while (0)

static struct veil_config *config;
static const struct veil_route *route;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        struct veil_config_opts opts = {.skip_key         = true,
                                        .skip_kafka_check = true};
        char err[512];

        (void)argc;
        (void)argv;
        config = veil_config_load("config/veil.yaml", &opts, err, sizeof(err));
        if (!config)
                fprintf(stderr,
                        "fuzz_schema: %s (run from the repository "
                        "root)\n",
                        err);
        CHECK(config && config->policy.n_purposes > 0);
        route = veil_policy_route(&config->policy, "customers");
        return 0;
}

static void compile(const struct veil_schema *schema,
                    const struct veil_purpose *purpose, const char *root_label)
{
        struct veil_plan_opts opts = {0};
        struct veil_schema *derived;
        struct veil_plan *plan;
        const char *text;
        char err[1024];

        opts.policy     = &config->policy;
        opts.route      = route;
        opts.purpose    = purpose;
        opts.root_label = root_label;
        err[0]          = '\0';
        plan            = veil_plan_compile(schema, &opts, err, sizeof(err));
        if (!plan) {
                CHECK(err[0]);
                return;
        }
        text    = veil_plan_derived_text(plan);
        derived = veil_schema_parse(text, strlen(text), NULL, -1, err,
                                    sizeof(err));
        if (!derived)
                fprintf(stderr,
                        "fuzz_schema: derived schema does not parse: "
                        "%s\n",
                        err);
        CHECK(derived);
        veil_schema_destroy(derived);
        veil_plan_destroy(plan);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const uint8_t *nul = memchr(data, 0, size);
        size_t text_len    = nul ? (size_t)(nul - data) : size;
        struct veil_field_annotations ann;
        struct veil_schema *schema;
        json_t *metadata = NULL;
        char *text, err[1024];
        size_t i;

        if (nul) {
                size_t mlen = size - text_len - 1;
                char *m     = veil_malloc(mlen ? mlen : 1);

                memcpy(m, nul + 1, mlen);
                metadata = json_loadb(m, mlen, 0, NULL);
                free(m);
        }
        text = veil_malloc(text_len ? text_len : 1);
        memcpy(text, data, text_len);
        err[0] = '\0';
        schema = veil_schema_parse(text, text_len, metadata, 7, err,
                                   sizeof(err));
        free(text);
        json_decref(metadata);
        if (!schema) {
                CHECK(err[0]);
                return 0;
        }
        for (i = 0; i < schema->n_fields; i++) {
                const struct veil_schema_field *f = &schema->fields[i];
                const struct veil_schema_field *g =
                        veil_schema_field(schema, f->path);

                CHECK(g && !strcmp(g->path, f->path));
                CHECK(f->parent < (int)i);
                veil_schema_field_annotations(f, &ann);
                (void)veil_policy_classify(&config->policy, route, f->path,
                                           &ann, NULL);
        }
        for (i = 0; i < config->policy.n_purposes; i++)
                compile(schema, &config->policy.purposes[i], NULL);
        /* A key schema, labelled as the route labels keys. */
        compile(schema, &config->policy.purposes[0],
                route && route->key_class ? route->key_class : "customer_id");
        veil_schema_destroy(schema);
        return 0;
}
