/* fuzz_registry.c - libFuzzer harness over what a schema registry answers:
 * the JSON bodies of GET /schemas/ids/N, GET /subjects/S/versions/latest,
 * POST /subjects/S/versions and of 4xx errors, and the file:// backend's
 * manifest (.veil-registry.json). No HTTP: the parsing functions of
 * common/registry.c are called directly, so this file includes registry.c
 * (its parsers are static) and links the rest of the library. Built by
 * scripts/fuzz.sh:
 *
 *   scripts/fuzz.sh fuzz_registry        (FUZZ_SECONDS, default 20)
 *
 * Input: byte 0 picks what the rest is (low 3 bits: 0 by-id answer, 1
 * latest answer, 2 register answer, 3 error body with the HTTP status from
 * byte 0's high bits, 4 manifest file, 5 an .avsc file as register()
 * normalises it). The body is NUL-terminated as reg_write_cb leaves it;
 * the success path repeats reg_http_call's (parse, must be an object).
 * Checked: every outcome is 0 or a Veil error code with a message; a
 * successful answer gives a schema string and a valid id. */
#include "../../common/registry.c"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        fprintf(stderr, "fuzz_registry: %s:%d: %s\n",          \
                                __FILE__, __LINE__, #cond);                    \
                        abort();                                               \
                }                                                              \
        } while (0)

static char dir[64];
static char manifest[128];
static struct veil_registry file_reg;

static void cleanup(void)
{
        unlink(manifest);
        rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void)argc;
        (void)argv;
        snprintf(dir, sizeof(dir), "%s/veil-fuzz-registry-XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        CHECK(mkdtemp(dir));
        snprintf(manifest, sizeof(manifest), "%s/%s", dir, REG_MANIFEST);
        file_reg.kind = REG_FILE;
        file_reg.dir  = dir;
        atexit(cleanup);
        return 0;
}

/* reg_http_call's 2xx branch: the body must be a JSON object. */
static json_t *answer(const struct reg_buf *buf)
{
        json_error_t jerr;
        json_t *root = buf->data ? json_loads(buf->data, 0, &jerr) : NULL;

        if (!json_is_object(root)) {
                json_decref(root);
                return NULL;
        }
        return root;
}

static bool known_code(int err)
{
        return err == 0 || err == VEIL_EINVAL || err == VEIL_EPROTO ||
               err == VEIL_ENOTFOUND || err == VEIL_EAUTH || err == VEIL_ENOMEM;
}

static void schema_answer(const struct reg_buf *buf, bool want_id)
{
        const char *path = "/subjects/customers-value/versions/latest";
        char *schema = NULL, *metadata = NULL, err[512] = "";
        json_t *root = answer(buf), *id;
        int rc;

        if (!root)
                return;
        if (want_id) {
                id = json_object_get(root, "id");
                if (!json_is_integer(id) || json_integer_value(id) < 0 ||
                    json_integer_value(id) > INT32_MAX) {
                        json_decref(root);
                        return;
                }
        }
        rc = reg_http_schema(root, path, &schema, &metadata, err, sizeof(err));
        CHECK(known_code(rc));
        if (rc) {
                CHECK(err[0] && !schema && !metadata);
        } else {
                CHECK(schema);
                /* The metadata text is what schema parsing gets. */
                if (metadata) {
                        json_t *m = json_loads(metadata, 0, NULL);

                        CHECK(json_is_object(m));
                        json_decref(m);
                }
        }
        free(schema);
        free(metadata);
        json_decref(root);
}

static void register_answer(const struct reg_buf *buf)
{
        json_t *root = answer(buf), *id;

        if (!root)
                return;
        id = json_object_get(root, "id");
        if (json_is_integer(id) && json_integer_value(id) >= 0 &&
            json_integer_value(id) <= INT32_MAX)
                CHECK((int)json_integer_value(id) >= 0);
        json_decref(root);
}

static void error_body(const struct reg_buf *buf, unsigned sel)
{
        static const long statuses[] = {400, 401, 403, 404, 409, 415, 422, 499};
        /* Only base and auth are read: the hints vary with the
         * credentials Veil presents. */
        struct veil_registry reg = {.base = (char *)"https://registry.test",
                                    .auth = (sel >> 3) % 3};
        char err[512]            = "";
        int rc;

        rc = reg_http_4xx(&reg, "GET", "/schemas/ids/7", statuses[sel & 7], buf,
                          err, sizeof(err));
        CHECK(rc != 0 && known_code(rc) && err[0]);
}

static void manifest_file(const uint8_t *data, size_t size)
{
        char err[512] = "", sha[65];
        json_t *m     = NULL, *e;
        FILE *f       = fopen(manifest, "wb");
        size_t i;
        int rc;

        CHECK(f);
        CHECK(size == 0 || fwrite(data, 1, size, f) == size);
        CHECK(fclose(f) == 0);
        rc = reg_manifest_load(&file_reg, &m, err, sizeof(err));
        CHECK(known_code(rc));
        if (rc) {
                CHECK(err[0] && !m);
                return;
        }
        for (i = 0; i < 4; i++)
                if ((e = reg_manifest_find_id(m, (int)i)))
                        CHECK(json_is_string(json_object_get(e, "schema")));
        reg_sha256_hex("\"string\"", sha);
        if (!reg_manifest_find(m, "customers-value", sha))
                CHECK(reg_manifest_add(m, "customers-value", sha,
                                       "\"string\"") != 0);
        json_decref(m);
}

static void avsc_file(const struct reg_buf *buf)
{
        char err[512] = "", *norm = NULL;
        int rc;

        rc = reg_normalize(buf->data, "customers-value.avsc", &norm, err,
                           sizeof(err));
        CHECK(known_code(rc));
        if (rc) {
                CHECK(err[0] && !norm);
                return;
        }
        CHECK(norm);
        free(norm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct reg_buf buf = {0};
        unsigned sel;

        if (size < 1)
                return 0;
        sel = data[0];
        /* What reg_write_cb leaves: the bytes and a NUL. */
        buf.len  = size - 1;
        buf.cap  = size;
        buf.data = veil_malloc(size);
        memcpy(buf.data, data + 1, size - 1);
        buf.data[size - 1] = '\0';
        switch (sel & 7) {
        case 0:
                schema_answer(&buf, false);
                break;
        case 1:
                schema_answer(&buf, true);
                break;
        case 2:
                register_answer(&buf);
                break;
        case 3:
                error_body(&buf, sel >> 3);
                break;
        case 4:
                manifest_file(data + 1, size - 1);
                break;
        default:
                avsc_file(&buf);
                break;
        }
        free(buf.data);
        return 0;
}
