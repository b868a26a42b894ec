/* test_schema.c - field paths and annotations read from Avro schemas. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <string.h>

#include "schema.h"
#include "util.h"

static struct veil_schema *load(const char *path, json_t *meta)
{
        char err[256] = "";
        size_t len;
        char *text = veil_file_read(path, &len, err, sizeof(err));
        struct veil_schema *s;

        cr_assert_not_null(text, "%s", err);
        s = veil_schema_parse(text, len, meta, 7, err, sizeof(err));
        free(text);
        cr_assert_not_null(s, "%s", err);
        return s;
}

Test(schema, customer_paths_and_annotations)
{
        struct veil_schema *s = load("schemas/customers-value.avsc", NULL);
        const struct veil_schema_field *f;

        cr_assert_eq(s->id, 7);
        f = veil_schema_field(s, "email");
        cr_assert_not_null(f);
        cr_assert_str_eq(f->pii, "email");
        cr_assert_eq(f->depth, 1);
        f = veil_schema_field(s, "address.zip");
        cr_assert_not_null(f);
        cr_assert_null(f->pii);
        cr_assert_eq(f->depth, 2);
        cr_assert_str_eq(s->fields[f->parent].path, "address");
        f = veil_schema_field(s, "contacts[].email");
        cr_assert_not_null(f);
        cr_assert_str_eq(f->pii, "email");
        cr_assert_eq(avro_typeof(f->type), AVRO_UNION);
        f = veil_schema_field(s, "birth_date");
        cr_assert_str_eq(f->logical, "date");
        f = veil_schema_field(s, "account_uuid");
        cr_assert_str_eq(f->logical, "uuid");
        cr_assert_null(veil_schema_field(s, "nope"));
        cr_assert_not_null(veil_schema_named(s, "com.example.crm.Address"));
        veil_schema_destroy(s);
}

Test(schema, confluent_tags_and_metadata)
{
        const char *text =
                "{\"type\":\"record\",\"name\":\"U\",\"namespace\":\"n\","
                "\"fields\":["
                "{\"name\":\"a\",\"type\":\"string\",\"confluent:tags\":"
                "[\"PII\",\"SENSITIVE\"]},"
                "{\"name\":\"b\",\"type\":{\"type\":\"record\",\"name\":\"B\","
                "\"fields\":[{\"name\":\"c\",\"type\":\"long\"}]}},"
                "{\"name\":\"d\",\"type\":[\"null\",\"B\"]},"
                "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"B\"}}"
                "]}";
        json_t *meta = json_pack("{s:{s:[s],s:[s],s:[s]}}", "tags", "U.b.c",
                                 "PRIVATE", "**.c", "WILD", "a", "DIRECT");
        char err[256];
        struct veil_schema *s = veil_schema_parse(text, strlen(text), meta, -1,
                                                  err, sizeof(err));
        const struct veil_schema_field *f;

        json_decref(meta);
        cr_assert_not_null(s, "%s", err);
        f = veil_schema_field(s, "a");
        cr_assert_eq(f->n_tags, 3);
        cr_assert_str_eq(f->tags[0], "PII");
        cr_assert_str_eq(f->tags[1], "SENSITIVE");
        cr_assert_str_eq(f->tags[2], "DIRECT");
        f = veil_schema_field(s, "b.c");
        cr_assert_not_null(f);
        cr_assert_eq(f->n_tags, 2);
        /* the reference to B under a union and a map gets its own paths */
        cr_assert_not_null(veil_schema_field(s, "d.c"));
        f = veil_schema_field(s, "m{}.c");
        cr_assert_not_null(f);
        cr_assert_eq(f->n_tags, 1);
        cr_assert_str_eq(f->tags[0], "WILD");
        veil_schema_destroy(s);
}

Test(schema, rejects_bad_schemas)
{
        char err[256]   = "";
        const char *bad = "{\"type\":\"record\",\"name\":\"R\",\"fields\":"
                          "[{\"name\":\"x\",\"type\":\"nosuch\"}]}";

        cr_assert_null(
                veil_schema_parse(bad, strlen(bad), NULL, 1, err, sizeof(err)));
        cr_assert(strstr(err, "invalid Avro schema") != NULL, "%s", err);
        cr_assert_null(veil_schema_parse("{", 1, NULL, 1, err, sizeof(err)));
}

/* A named type defined twice: refused by name, and (under ASan) without the
 * leak avro-c has on that path (found by fuzz_schema). */
Test(schema, rejects_named_type_defined_twice)
{
        static const char *const kinds[] = {
                "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\"]}",
                "{\"type\":\"fixed\",\"name\":\"E\",\"size\":1}",
                "{\"type\":\"record\",\"name\":\"E\",\"fields\":[]}"};
        char text[512], err[256];
        size_t i;

        for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
                snprintf(text, sizeof(text),
                         "{\"type\":\"record\",\"name\":\"R\",\"namespace\":"
                         "\"n\",\"fields\":[{\"name\":\"a\",\"type\":%s},"
                         "{\"name\":\"b\",\"type\":%s}]}",
                         kinds[i], kinds[i]);
                err[0] = '\0';
                cr_assert_null(veil_schema_parse(text, strlen(text), NULL, 1,
                                                 err, sizeof(err)));
                cr_assert(strstr(err, "'n.E' is defined more than once"), "%s",
                          err);
        }
}

Test(schema, depth_limit)
{
        char *text = NULL;
        size_t i, n = VEIL_SCHEMA_MAX_DEPTH + 4, len = 0, cap = 0;
        char err[256] = "";
        FILE *fp      = open_memstream(&text, &len);

        (void)cap;
        for (i = 0; i < n; i++)
                fprintf(fp,
                        "{\"type\":\"record\",\"name\":\"R%zu\",\"fields\":"
                        "[{\"name\":\"f\",\"type\":",
                        i);
        fprintf(fp, "\"int\"");
        for (i = 0; i < n; i++)
                fprintf(fp, "}]}");
        fclose(fp);
        cr_assert_null(veil_schema_parse(text, len, NULL, 1, err, sizeof(err)));
        cr_assert(strstr(err, "deeper") != NULL, "%s", err);
        free(text);
}
