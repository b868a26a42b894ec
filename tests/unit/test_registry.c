/* test_registry.c - the registry client vs. the double and file:// dirs. */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry.h"
#include "registry_double.h"
#include "veil.h"

#define SCHEMA_V1                                                              \
        "{\"type\":\"record\",\"name\":\"Customer\",\"fields\":[{\"name\":"    \
        "\"id\",\"type\":\"string\"}]}"
#define SCHEMA_V2                                                              \
        "{\"type\":\"record\",\"name\":\"Customer\",\"fields\":[{\"name\":"    \
        "\"id\",\"type\":\"string\"},{\"name\":\"email\",\"type\":\"string\"," \
        "\"pii\":\"email\"}]}"

static struct registry_double *rdbl;
static char errstr[512];

static void double_start(void)
{
        rdbl = registry_double_start();
        cr_assert_not_null(rdbl, "registry double did not start");
}

static void double_stop(void)
{
        registry_double_stop(rdbl);
        rdbl = NULL;
}

/* A client for url with the given retries (timeouts short: loopback). */
static struct veil_registry *client(const char *url, const char *basic_auth,
                                    int retries)
{
        struct veil_registry_opts opts = {
                .url        = (char *)url,
                .basic_auth = (char *)basic_auth,
                .timeout_ms = 5000,
                .retries    = retries,
        };
        struct veil_registry *reg =
                veil_registry_new(&opts, errstr, sizeof(errstr));

        cr_assert_not_null(reg, "veil_registry_new: %s", errstr);
        return reg;
}

TestSuite(registry, .timeout = 60);

Test(registry, by_id_second_fetch_from_cache, .init = double_start,
     .fini = double_stop)
{
        int id = registry_double_add(rdbl, "customers-value", SCHEMA_V1);
        struct veil_registry *reg = client(registry_double_url(rdbl), NULL, 0);
        const char *s1 = NULL, *s2 = NULL;
        char path[64];

        snprintf(path, sizeof(path), "/schemas/ids/%d", id);
        cr_assert_eq(veil_registry_schema_by_id(reg, id, &s1, errstr,
                                                sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_str_eq(s1, SCHEMA_V1);
        cr_assert_eq(registry_double_requests(rdbl, path), 1);

        cr_assert_eq(veil_registry_schema_by_id(reg, id, &s2, errstr,
                                                sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_eq(s1, s2, "second lookup must return the cached text");
        cr_assert_eq(registry_double_requests(rdbl, path), 1,
                     "second lookup must not reach the registry");
        cr_assert_eq(registry_double_requests(rdbl, NULL), 1);
        veil_registry_destroy(reg);
}

struct lookup_arg {
        struct veil_registry *reg;
        int id;
        const char *schema;
        int err;
};

static void *lookup_thread(void *p)
{
        struct lookup_arg *arg = p;
        char err[256];

        arg->err = veil_registry_schema_by_id(arg->reg, arg->id, &arg->schema,
                                              err, sizeof(err));
        return NULL;
}

Test(registry, threads_share_one_fetch, .init = double_start,
     .fini = double_stop)
{
        int id = registry_double_add(rdbl, "customers-value", SCHEMA_V1);
        struct veil_registry *reg = client(registry_double_url(rdbl), NULL, 0);
        struct lookup_arg args[4];
        pthread_t th[4];
        size_t i;

        for (i = 0; i < 4; i++) {
                args[i] =
                        (struct lookup_arg){.reg = reg, .id = id, .err = -100};
                cr_assert_eq(
                        pthread_create(&th[i], NULL, lookup_thread, &args[i]),
                        0);
        }
        for (i = 0; i < 4; i++) {
                pthread_join(th[i], NULL);
                cr_assert_eq(args[i].err, 0);
                cr_assert_eq(args[i].schema, args[0].schema);
        }
        cr_assert_str_eq(args[0].schema, SCHEMA_V1);
        cr_assert_eq(registry_double_requests(rdbl, NULL), 1,
                     "concurrent misses on one id make one request");
        veil_registry_destroy(reg);
}

Test(registry, latest_returns_newest_version_and_fills_id_cache,
     .init = double_start, .fini = double_stop)
{
        int id1 = registry_double_add(rdbl, "customers-value", SCHEMA_V1);
        int id2 = registry_double_add(rdbl, "customers-value", SCHEMA_V2);
        struct veil_registry *reg = client(registry_double_url(rdbl), NULL, 0);
        const char *schema = NULL, *by_id = NULL;
        int id = -1;
        char path[64];

        cr_assert_neq(id1, id2);
        cr_assert_eq(veil_registry_latest(reg, "customers-value", &id, &schema,
                                          errstr, sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_eq(id, id2);
        cr_assert_str_eq(schema, SCHEMA_V2);
        cr_assert_eq(registry_double_requests(
                             rdbl, "/subjects/customers-value/versions/latest"),
                     1);

        /* The id learned from latest is served from the cache. */
        snprintf(path, sizeof(path), "/schemas/ids/%d", id2);
        cr_assert_eq(veil_registry_schema_by_id(reg, id2, &by_id, errstr,
                                                sizeof(errstr)),
                     0);
        cr_assert_str_eq(by_id, SCHEMA_V2);
        cr_assert_eq(registry_double_requests(rdbl, path), 0);
        veil_registry_destroy(reg);
}

Test(registry, metadata_is_returned, .init = double_start, .fini = double_stop)
{
        int id = registry_double_add_meta(
                rdbl, "orders-value", SCHEMA_V1,
                "{\"tags\":{\"PII\":[\"Customer.id\"]}}");
        int plain = registry_double_add(rdbl, "plain-value", SCHEMA_V2);
        struct veil_registry *reg = client(registry_double_url(rdbl), NULL, 0);
        const char *schema = NULL, *meta = NULL;
        int got = -1;

        cr_assert_eq(veil_registry_latest_meta(reg, "orders-value", &got,
                                               &schema, &meta, errstr,
                                               sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_eq(got, id);
        cr_assert_str_eq(meta, "{\"tags\":{\"PII\":[\"Customer.id\"]}}");

        meta = "unset";
        cr_assert_eq(veil_registry_schema_by_id_meta(reg, plain, &schema, &meta,
                                                     errstr, sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_null(meta, "a schema without metadata has NULL metadata");
        veil_registry_destroy(reg);
}

Test(registry, register_returns_stable_id, .init = double_start,
     .fini = double_stop)
{
        struct veil_registry *reg = client(registry_double_url(rdbl), NULL, 0);
        struct veil_registry *other;
        int id = -1, again = -1, fresh = -1, want = -1;
        char *text;

        cr_assert_eq(veil_registry_register(reg, "customers.analytics-value",
                                            SCHEMA_V1, &id, errstr,
                                            sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_gt(id, 0);
        text = registry_double_latest(rdbl, "customers.analytics-value", &want);
        cr_assert_not_null(text);
        cr_assert_str_eq(text, SCHEMA_V1);
        cr_assert_eq(id, want);
        free(text);

        /* Same (subject, text): answered from the cache. */
        cr_assert_eq(veil_registry_register(reg, "customers.analytics-value",
                                            SCHEMA_V1, &again, errstr,
                                            sizeof(errstr)),
                     0);
        cr_assert_eq(again, id);
        cr_assert_eq(
                registry_double_requests(
                        rdbl, "/subjects/customers.analytics-value/versions"),
                1);

        /* A fresh client asks the registry and gets the same id. */
        other = client(registry_double_url(rdbl), NULL, 0);
        cr_assert_eq(veil_registry_register(other, "customers.analytics-value",
                                            SCHEMA_V1, &fresh, errstr,
                                            sizeof(errstr)),
                     0);
        cr_assert_eq(fresh, id);
        cr_assert_eq(
                registry_double_requests(
                        rdbl, "/subjects/customers.analytics-value/versions"),
                2);
        veil_registry_destroy(other);
        veil_registry_destroy(reg);
}

Test(registry, subject_is_url_escaped, .init = double_start,
     .fini = double_stop)
{
        int id = registry_double_add(rdbl, "odd subject?&#", SCHEMA_V1);
        struct veil_registry *reg = client(registry_double_url(rdbl), NULL, 0);
        const char *schema        = NULL;
        int got                   = -1;

        cr_assert_eq(veil_registry_latest(reg, "odd subject?&#", &got, &schema,
                                          errstr, sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_eq(got, id);
        veil_registry_destroy(reg);
}

Test(registry, rejected_schemas_are_einval, .init = double_start,
     .fini = double_stop)
{
        struct veil_registry *reg = client(registry_double_url(rdbl), NULL, 3);
        int id                    = -1;

        cr_assert_eq(veil_registry_register(reg, "x-value", "{not json", &id,
                                            errstr, sizeof(errstr)),
                     VEIL_EINVAL);
        cr_assert(strstr(errstr, "42201") && strstr(errstr, "invalid"), "%s",
                  errstr);

        registry_double_fail_next(rdbl, 1, 409);
        cr_assert_eq(veil_registry_register(reg, "x-value", SCHEMA_V1, &id,
                                            errstr, sizeof(errstr)),
                     VEIL_EINVAL);
        cr_assert(strstr(errstr, "HTTP 409") && strstr(errstr, "incompatible"),
                  "%s", errstr);
        /* 4xx is not retried. */
        cr_assert_eq(
                registry_double_requests(rdbl, "/subjects/x-value/versions"),
                2);
        veil_registry_destroy(reg);
}

Test(registry, basic_auth, .init = double_start, .fini = double_stop)
{
        int id = registry_double_add(rdbl, "customers-value", SCHEMA_V1);
        struct veil_registry *reg;
        const char *schema = NULL;
        char url[128];

        registry_double_require_auth(rdbl, "alice", "s3cret:x");

        reg = client(registry_double_url(rdbl), "alice:s3cret:x", 0);
        cr_assert_eq(veil_registry_schema_by_id(reg, id, &schema, errstr,
                                                sizeof(errstr)),
                     0, "credentials in opts: %s", errstr);
        veil_registry_destroy(reg);

        snprintf(url, sizeof(url), "http://alice:s3cret%%3Ax@127.0.0.1:%d/",
                 registry_double_port(rdbl));
        reg = client(url, NULL, 0);
        cr_assert_eq(veil_registry_schema_by_id(reg, id, &schema, errstr,
                                                sizeof(errstr)),
                     0, "credentials in URL: %s", errstr);
        veil_registry_destroy(reg);

        reg = client(registry_double_url(rdbl), NULL, 2);
        cr_assert_eq(veil_registry_schema_by_id(reg, id, &schema, errstr,
                                                sizeof(errstr)),
                     VEIL_EAUTH);
        cr_assert(strstr(errstr, "HTTP 401"), "%s", errstr);
        veil_registry_destroy(reg);

        snprintf(url, sizeof(url), "http://alice:wrongpass@127.0.0.1:%d",
                 registry_double_port(rdbl));
        reg = client(url, NULL, 2);
        cr_assert_eq(veil_registry_schema_by_id(reg, id, &schema, errstr,
                                                sizeof(errstr)),
                     VEIL_EAUTH);
        cr_assert_null(strstr(errstr, "wrongpass"), "%s", errstr);
        cr_assert_null(strstr(errstr, "alice"), "%s", errstr);
        veil_registry_destroy(reg);
        /* Two successes and two refusals, none retried. */
        cr_assert_eq(registry_double_requests(rdbl, NULL), 4);
}

Test(registry, not_found_codes, .init = double_start, .fini = double_stop)
{
        struct veil_registry *reg = client(registry_double_url(rdbl), NULL, 3);
        const char *schema        = NULL;
        int id                    = -1;

        cr_assert_eq(veil_registry_latest(reg, "nope-value", &id, &schema,
                                          errstr, sizeof(errstr)),
                     VEIL_ENOTFOUND);
        cr_assert(
                strstr(errstr, "40401") &&
                        strstr(errstr, "subject not found") &&
                        strstr(errstr, "/subjects/nope-value/versions/latest"),
                "%s", errstr);

        cr_assert_eq(veil_registry_schema_by_id(reg, 999, &schema, errstr,
                                                sizeof(errstr)),
                     VEIL_ENOTFOUND);
        cr_assert(strstr(errstr, "40403") &&
                          strstr(errstr, "schema not found") &&
                          strstr(errstr, "/schemas/ids/999"),
                  "%s", errstr);
        cr_assert_eq(registry_double_requests(rdbl, NULL), 2,
                     "404 is not retried");
        veil_registry_destroy(reg);
}

Test(registry, retries_5xx_then_succeeds, .init = double_start,
     .fini = double_stop)
{
        int id = registry_double_add(rdbl, "customers-value", SCHEMA_V1);
        struct veil_registry *reg = client(registry_double_url(rdbl), NULL, 3);
        const char *schema        = NULL;
        char path[64];

        snprintf(path, sizeof(path), "/schemas/ids/%d", id);
        registry_double_fail_next(rdbl, 2, 503);
        cr_assert_eq(veil_registry_schema_by_id(reg, id, &schema, errstr,
                                                sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_str_eq(schema, SCHEMA_V1);
        cr_assert_eq(registry_double_requests(rdbl, path), 3);
        veil_registry_destroy(reg);
}

Test(registry, gives_up_after_retries, .init = double_start,
     .fini = double_stop)
{
        int id = registry_double_add(rdbl, "customers-value", SCHEMA_V1);
        struct veil_registry *reg = client(registry_double_url(rdbl), NULL, 2);
        const char *schema        = NULL;

        registry_double_fail_next(rdbl, 10, 500);
        cr_assert_eq(veil_registry_schema_by_id(reg, id, &schema, errstr,
                                                sizeof(errstr)),
                     VEIL_ENET);
        cr_assert(strstr(errstr, "HTTP 500") && strstr(errstr, "3 attempts"),
                  "%s", errstr);
        cr_assert_eq(registry_double_requests(rdbl, NULL), 3);
        veil_registry_destroy(reg);
}

Test(registry, connection_refused_is_enet)
{
        /* A bound socket that never listens: connects are refused, and the
         * port cannot be taken by anyone else meanwhile. */
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t len         = sizeof(sa);
        int fd                = socket(AF_INET, SOCK_STREAM, 0);
        struct veil_registry *reg;
        const char *schema = NULL;
        char url[128];

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cr_assert_geq(fd, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
        snprintf(url, sizeof(url), "http://bob:hunter2@127.0.0.1:%d",
                 ntohs(sa.sin_port));
        reg = client(url, NULL, 1);
        cr_assert_eq(veil_registry_schema_by_id(reg, 1, &schema, errstr,
                                                sizeof(errstr)),
                     VEIL_ENET);
        cr_assert(strstr(errstr, "/schemas/ids/1") &&
                          strstr(errstr, "2 attempts"),
                  "%s", errstr);
        cr_assert_null(strstr(errstr, "hunter2"), "%s", errstr);
        veil_registry_destroy(reg);
        close(fd);
}

Test(registry, bad_urls_rejected)
{
        struct veil_registry_opts opts = {.url = "kafka://x"};

        cr_assert_null(veil_registry_new(&opts, errstr, sizeof(errstr)));
        cr_assert(strstr(errstr, "registry.url"), "%s", errstr);
        opts.url = "file:///nonexistent/veil-registry-dir";
        cr_assert_null(veil_registry_new(&opts, errstr, sizeof(errstr)));
        cr_assert(strstr(errstr, "No such file"), "%s", errstr);
        opts.url = "http://u:pw@127.0.0.1:1/?x=1";
        cr_assert_null(veil_registry_new(&opts, errstr, sizeof(errstr)));
        cr_assert_null(strstr(errstr, "pw"), "%s", errstr);
}

/* ---- file:// backend ---- */

static char tmpdir[256];
static char fileurl[300];

static void file_setup(void)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/veil-registry-XXXXXX");
        cr_assert_not_null(mkdtemp(tmpdir));
        snprintf(fileurl, sizeof(fileurl), "file://%s", tmpdir);
}

static void file_teardown(void)
{
        DIR *d = opendir(tmpdir);
        struct dirent *de;
        char path[600];

        while (d && (de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                snprintf(path, sizeof(path), "%s/%s", tmpdir, de->d_name);
                unlink(path);
        }
        if (d)
                closedir(d);
        rmdir(tmpdir);
}

static void write_file(const char *name, const char *text)
{
        char path[600];
        FILE *fp;

        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        fp = fopen(path, "w");
        cr_assert_not_null(fp);
        fputs(text, fp);
        fclose(fp);
}

static bool file_exists(const char *name)
{
        char path[600];

        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        return access(path, F_OK) == 0;
}

Test(registry, file_ids_stable_across_instances, .init = file_setup,
     .fini = file_teardown)
{
        struct veil_registry *reg;
        const char *schema = NULL, *old = NULL;
        int id1 = -1, id2 = -1, id3 = -1, again = -1;

        write_file("customers-value.avsc", SCHEMA_V1);
        reg = client(fileurl, NULL, 0);
        cr_assert_eq(veil_registry_latest(reg, "customers-value", &id1, &schema,
                                          errstr, sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_gt(id1, 0);
        cr_assert(strstr(schema, "\"Customer\""));
        cr_assert(file_exists(".veil-registry.json"));
        veil_registry_destroy(reg);

        /* Reformatting (whitespace, key order) is not a new version. */
        write_file("customers-value.avsc",
                   "{ \"name\": \"Customer\", \"type\": \"record\",\n"
                   "  \"fields\": [ { \"type\": \"string\", \"name\": \"id\" } "
                   "] }\n");
        reg = client(fileurl, NULL, 0);
        cr_assert_eq(veil_registry_latest(reg, "customers-value", &again,
                                          &schema, errstr, sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_eq(again, id1);

        /* A real change is a new id; the old id still decodes. */
        write_file("customers-value.avsc", SCHEMA_V2);
        cr_assert_eq(veil_registry_latest(reg, "customers-value", &id2, &schema,
                                          errstr, sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_neq(id2, id1);
        veil_registry_destroy(reg);

        reg = client(fileurl, NULL, 0);
        cr_assert_eq(veil_registry_schema_by_id(reg, id1, &old, errstr,
                                                sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert(strstr(old, "\"id\"") && !strstr(old, "email"), "%s", old);
        cr_assert_eq(veil_registry_latest(reg, "customers-value", &id3, &schema,
                                          errstr, sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_eq(id3, id2);
        veil_registry_destroy(reg);
}

Test(registry, file_register_writes_files, .init = file_setup,
     .fini = file_teardown)
{
        struct veil_registry *reg = client(fileurl, NULL, 0);
        const char *schema = NULL, *by_id = NULL;
        int id = -1, again = -1, latest = -1, v2 = -1;

        cr_assert_eq(veil_registry_register(reg, "customers.analytics-value",
                                            SCHEMA_V1, &id, errstr,
                                            sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert(file_exists("customers.analytics-value.avsc"));
        cr_assert(file_exists(".veil-registry.json"));
        veil_registry_destroy(reg);

        reg = client(fileurl, NULL, 0);
        cr_assert_eq(veil_registry_register(reg, "customers.analytics-value",
                                            SCHEMA_V1, &again, errstr,
                                            sizeof(errstr)),
                     0);
        cr_assert_eq(again, id,
                     "identical schema under the same subject keeps its id");
        cr_assert_eq(veil_registry_latest(reg, "customers.analytics-value",
                                          &latest, &schema, errstr,
                                          sizeof(errstr)),
                     0);
        cr_assert_eq(latest, id);
        cr_assert_eq(veil_registry_schema_by_id(reg, id, &by_id, errstr,
                                                sizeof(errstr)),
                     0);
        cr_assert_str_eq(by_id, schema);

        /* A new version becomes latest; re-registering the old one does not
         * move latest back (as in Confluent). */
        cr_assert_eq(veil_registry_register(reg, "customers.analytics-value",
                                            SCHEMA_V2, &v2, errstr,
                                            sizeof(errstr)),
                     0);
        cr_assert_neq(v2, id);
        veil_registry_destroy(reg);
        reg = client(fileurl, NULL, 0);
        cr_assert_eq(veil_registry_register(reg, "customers.analytics-value",
                                            SCHEMA_V1, &again, errstr,
                                            sizeof(errstr)),
                     0);
        cr_assert_eq(again, id);
        cr_assert_eq(veil_registry_latest(reg, "customers.analytics-value",
                                          &latest, &schema, errstr,
                                          sizeof(errstr)),
                     0);
        cr_assert_eq(latest, v2);

        cr_assert_eq(veil_registry_register(reg, "bad-value",
                                            "{\"type\":\"nope\"}", &again,
                                            errstr, sizeof(errstr)),
                     VEIL_EINVAL);
        cr_assert(strstr(errstr, "Avro"), "%s", errstr);
        cr_assert(!file_exists("bad-value.avsc"));
        /* A named type defined twice: refused by name, and under ASan
         * without avro-c's leak on that path. */
        cr_assert_eq(veil_registry_register(
                             reg, "dup-value",
                             "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                             "{\"name\":\"a\",\"type\":{\"type\":\"enum\","
                             "\"name\":\"E\",\"symbols\":[\"A\"]}},"
                             "{\"name\":\"b\",\"type\":{\"type\":\"enum\","
                             "\"name\":\"E\",\"symbols\":[\"A\"]}}]}",
                             &again, errstr, sizeof(errstr)),
                     VEIL_EINVAL);
        cr_assert(strstr(errstr, "'E' is defined more than once"), "%s",
                  errstr);
        cr_assert(!file_exists("dup-value.avsc"));
        veil_registry_destroy(reg);
}

Test(registry, file_not_found_and_metadata, .init = file_setup,
     .fini = file_teardown)
{
        struct veil_registry *reg;
        const char *schema = NULL, *meta = NULL;
        int id = -1;

        write_file("orders-value.avsc", SCHEMA_V1);
        write_file("orders-value.meta.json",
                   "{ \"tags\": { \"PII\": [\"Customer.id\"] } }");
        reg = client(fileurl, NULL, 0);

        cr_assert_eq(veil_registry_latest(reg, "nope-value", &id, &schema,
                                          errstr, sizeof(errstr)),
                     VEIL_ENOTFOUND);
        cr_assert(strstr(errstr, "subject not found"), "%s", errstr);
        cr_assert_eq(veil_registry_schema_by_id(reg, 42, &schema, errstr,
                                                sizeof(errstr)),
                     VEIL_ENOTFOUND);
        cr_assert(strstr(errstr, "schema not found"), "%s", errstr);
        cr_assert_eq(veil_registry_latest(reg, "../etc-value", &id, &schema,
                                          errstr, sizeof(errstr)),
                     VEIL_EINVAL);

        cr_assert_eq(veil_registry_latest_meta(reg, "orders-value", &id,
                                               &schema, &meta, errstr,
                                               sizeof(errstr)),
                     0, "%s", errstr);
        cr_assert_str_eq(meta, "{\"tags\":{\"PII\":[\"Customer.id\"]}}");
        veil_registry_destroy(reg);
}

Test(registry, file_relative_url, .init = file_setup, .fini = file_teardown)
{
        struct veil_registry *reg;
        const char *schema = NULL;
        char url[300];
        int id = -1;

        /* Criterion runs each test in its own process: chdir stays here. */
        write_file("customers-value.avsc", SCHEMA_V1);
        cr_assert_eq(chdir("/tmp"), 0);
        snprintf(url, sizeof(url), "file://%s/", tmpdir + strlen("/tmp/"));
        reg = client(url, NULL, 0);
        cr_assert_eq(chdir("/"), 0); /* resolved at open, not per call */
        cr_assert_eq(veil_registry_latest(reg, "customers-value", &id, &schema,
                                          errstr, sizeof(errstr)),
                     0, "%s", errstr);
        veil_registry_destroy(reg);
}
