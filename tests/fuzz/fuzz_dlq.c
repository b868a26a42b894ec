/* fuzz_dlq.c - libFuzzer harness over dead letters as `veil dlq replay`
 * reads them: headers (veil.error, veil.source, veil.dlq.payload,
 * veil.key_id, veil.replay.done), a sealed or raw key and value. It drives
 * connectors/cmd_dlq.c's replay_one in --dry-run mode (no producer, the
 * source topic's partition count pre-cached), so this file includes
 * cmd_dlq.c. TO RE-POINT: the DLQ letter codec is being rewritten (issue
 * 11 item 5, seals bound to the headers); once it has a decode function,
 * call that instead of replay_one and regenerate the seeds.
 *
 *   scripts/fuzz.sh fuzz_dlq        (FUZZ_SECONDS, default 20)
 *
 * Input: byte 0 = flags (bit 0: the letter has a key, bit 1: a value,
 * bit 2: it sits at an offset an earlier replay marked done),
 * byte 1 = number of headers (mod 9), each header = name index (1 byte,
 * into names[] below) | length (1 byte) | bytes; then key length (2 bytes,
 * big-endian) | key; the rest is the value. Key and value sit in buffers of
 * exactly their size. The message is a zeroed buffer larger than
 * librdkafka's message struct whose headers are set with
 * rd_kafka_message_set_headers (public API), as on a produced message.
 * Checked: replay_one returns 0 and counts the letter exactly once (or
 * not at all for a replay marker). */
#include "../../connectors/cmd_dlq.c"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        fprintf(stderr, "fuzz_dlq: %s:%d: %s\n", __FILE__,     \
                                __LINE__, #cond);                              \
                        abort();                                               \
                }                                                              \
        } while (0)

static const char *const names[] = {"veil.error",       "veil.source",
                                    "veil.dlq.payload", "veil.key_id",
                                    "veil.replay.done", "veil.error.detail",
                                    "veil.dlq.cipher",  VEIL_DLQ_REPLAY_OF};
#define N_NAMES (sizeof(names) / sizeof(names[0]))

static struct veil_config *config;
static struct replay r;
static struct pass2 p2;
static _Alignas(64) unsigned char msgbuf[4096];
static FILE *devnull;

/* FUZZ_DEBUG=1: print the counters at exit (do the seeds still reach
 * "replayed"?). */
static void print_counts(void)
{
        fprintf(stderr,
                "fuzz_dlq: letters %" PRId64 " replayed %" PRId64
                " already %" PRId64 " other %" PRId64 " failed %" PRId64 "\n",
                r.letters, r.replayed, r.already, r.other, r.failed);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        struct veil_config_opts opts = {.skip_kafka_check = true};
        char err[512];

        (void)argc;
        (void)argv;
        unsetenv("VEIL_HMAC_KEY");
        config = veil_config_load("config/veil.yaml", &opts, err, sizeof(err));
        if (!config)
                fprintf(stderr,
                        "fuzz_dlq: %s (run from the repository "
                        "root)\n",
                        err);
        CHECK(config);
        CHECK(veil_dlq_aead_init(&r.aead, config, err, sizeof(err)) == 0);
        r.aead_ok   = true;
        r.config    = config;
        r.dlq_topic = config->topics.dlq ? config->topics.dlq : "veil.dlq";
        r.dry_run   = true;
        r.done      = json_object();
        r.parts     = json_object();
        r.codes     = json_object();
        /* Partition counts of every source: no metadata request. */
        for (size_t i = 0; i < config->policy.n_routes; i++)
                json_object_set_new(r.parts, config->policy.routes[i].source,
                                    json_integer(3));
        json_object_set_new(r.done, "veil.dlq/0/5", json_true());
        /* replay_one reports each refused letter on stderr; the sanitizers
         * write to fd 2 directly, so crash reports still show. */
        devnull = fopen("/dev/null", "w");
        CHECK(devnull);
        veil_buf_init(&r.key, 0);
        veil_buf_init(&r.value, 0);
        p2.r = &r;
        if (getenv("FUZZ_DEBUG"))
                atexit(print_counts);
        return 0;
}

static size_t take(const uint8_t *data, size_t size, size_t *pos, size_t n)
{
        size_t at = *pos;

        if (n > size - at)
                n = size - at;
        *pos = at + n;
        return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        rd_kafka_message_t *rkm = (rd_kafka_message_t *)msgbuf;
        rd_kafka_headers_t *hdrs;
        unsigned char *key = NULL, *value = NULL;
        size_t pos = 2, i, n, klen, vlen, name;
        int64_t before;
        int flags, nh;

        if (size < 2)
                return 0;
        flags = data[0];
        nh    = data[1] % 9;
        hdrs  = rd_kafka_headers_new(8);
        for (i = 0; i < (size_t)nh && size - pos >= 2; i++) {
                name = data[pos] % N_NAMES;
                n    = data[pos + 1];
                pos += 2;
                n = take(data, size, &pos, n);
                rd_kafka_header_add(hdrs, names[name], -1, data + pos - n,
                                    (ssize_t)n);
        }
        klen = 0;
        if (size - pos >= 2) {
                klen = (size_t)data[pos] << 8 | data[pos + 1];
                pos += 2;
        }
        klen = take(data, size, &pos, klen);
        if ((flags & 1) && klen) {
                key = veil_malloc(klen);
                memcpy(key, data + pos - klen, klen);
        }
        vlen = size - pos;
        if ((flags & 2) && vlen) {
                value = veil_malloc(vlen);
                memcpy(value, data + pos, vlen);
        }

        memset(msgbuf, 0, sizeof(msgbuf));
        rkm->partition = 0;
        rkm->offset    = flags & 4 ? 5 : 7; /* 5: already replayed */
        rkm->key       = key;
        rkm->key_len   = key ? klen : 0;
        rkm->payload   = value;
        rkm->len       = value ? vlen : 0;
        rd_kafka_message_set_headers(rkm, hdrs); /* owns hdrs now */

        before = r.replayed + r.failed + r.already + r.other;
        {
                FILE *saved = stderr;
                int rc;

                stderr = devnull;
                rc     = replay_one(&p2, rkm);
                stderr = saved;
                CHECK(rc == 0);
        }
        CHECK(r.replayed + r.failed + r.already + r.other - before <= 1);
        CHECK(!r.txn_open);

        rd_kafka_message_set_headers(rkm, NULL); /* destroys hdrs */
        free(key);
        free(value);
        return 0;
}
