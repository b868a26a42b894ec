/* cmd_config_reference.c - `veil config-reference`: prints
 * docs/config-reference.md from the loader's key tables (common/config.c,
 * through veil_config_each_key) and the built-in filters' config tables.
 * The key names and which are required come from those tables; the type,
 * default and one-line description of each come from `notes` below. A key
 * without a note, or a note for a key no table has, makes the command exit
 * 1, so the reference cannot silently fall behind the loader. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "config.h"
#include "filter.h"
#include "veil.h"

static const struct veil_cmd_help help_config_reference = {
        "config-reference", "config-reference",
        "Print the configuration reference (Markdown) from the loader's key "
        "tables and the\nbuilt-in filters' tables; docs/config-reference.md "
        "is this output.",
        "exit: 0 printed, 1 printed but some key has no description (or a "
        "description names\na key the loader no longer has), 2 usage "
        "error\n"};

struct note {
        const char *section;
        const char *key;
        const char *type;
        const char *def;
        const char *help;
};

/* One line per key of the loader's tables. Keep the description free of
 * '|' (it ends up in a Markdown table). */
static const struct note notes[] = {
        {"", "detectors", "map", "-",
         "your own detectors by name (a built-in detector's name is refused), "
         "usable by classes and `redact_text`"},
        {"", "classes", "map", "-",
         "data classes by name; a name may not be a tier name"},
        {"", "tag_classes", "map", "-",
         "schema tag (Confluent `confluent:tags`, `metadata.tags`) to class "
         "or tier"},
        {"", "purposes", "map", "-",
         "downstream purposes by name, each with its licence, retention and "
         "transforms"},
        {"", "topics", "map", "-", "Veil's own topics"},
        {"", "routes", "list", "-",
         "one route per source topic: which purposes get it, on which topic"},
        {"", "kafka", "map", "-",
         "librdkafka properties, passed verbatim (`bootstrap.servers`, "
         "`security.protocol`, `sasl.*`…); each is checked by librdkafka "
         "when the file loads"},
        {"", "group", "string", "veil",
         "consumer group of the workers; prefix of each transactional.id"},
        {"", "instance", "string", "host name",
         "stable id of this worker: transactional.id = group-instance; give "
         "each worker of a group its own"},
        {"", "registry", "map", "-", "the schema registry"},
        {"", "keys", "map", "-", "Veil's key material"},
        {"", "dlq", "map", "-", "dead-letter settings"},
        {"", "audit", "map", "-", "audit settings"},
        {"", "metrics", "map", "-", "the Prometheus endpoint"},
        {"", "log", "map", "-", "logging (JSON lines on stderr)"},
        {"", "commit_interval", "duration", "100ms",
         "longest time a batch stays open before its transaction commits"},
        {"", "max_batch_records", "integer", "10000",
         "records per transaction at most (1 to 10000000)"},
        {"", "plugins", "list", "-",
         "shared objects with your own filters, run between decode and "
         "license: a path (with a slash: relative to the config file), or "
         "{ path, config: { KEY: VALUE } } checked against the plugin's own "
         "table; built for filter ABI 2"},
        {"", "filters", "map", "-",
         "settings of the built-in filters by name, checked against each "
         "filter's own table (`veil run --help` lists them), e.g. "
         "`license: { plan_cache_size: 256 }`"},
        {"", "threads", "integer", "the cores",
         "pipelines per `veil run` (1 to 64), each its own consumer-group "
         "member and transactional producer (transactional.id "
         "group-instance, then group-instance-N)"},
        {"", "erasure", "map", "-", "erasure request settings"},

        {"detectors.*", "pattern", "string", "-",
         "a Hyperscan regular expression; compiled when the file loads"},

        {"classes.*", "tier", "tier", "-",
         "public, internal, confidential or restricted"},
        {"classes.*", "detector", "string", "-",
         "a built-in or your own detector that finds this class in free "
         "text"},

        {"purposes.*", "license", "map", "-",
         "the data licence this purpose holds"},
        {"purposes.*", "retention", "duration", "-",
         "how long a key's data may stay on the purpose topic after its "
         "last record (`90d`, `12h`, `30m`, `90s`, `500ms`, combined `1h30m`)"},
        {"purposes.*", "transforms", "map", "-",
         "class or tier to transform: keep, drop, null, hash, mask, "
         "generalize, encrypt, redact_text (a name, or a one-key map with "
         "its settings); a class not listed never reaches the purpose"},

        {"purposes.*.license", "id", "string", "-",
         "the licence's identifier, carried in `veil.license` headers and "
         "audit"},
        {"purposes.*.license", "valid_until", "date", "-",
         "last day (UTC, YYYY-MM-DD) the licence is valid; after it the "
         "purpose gets nothing and its data is tombstoned "
         "(`license-expired`)"},

        {"purposes.*", "requires", "map", "-",
         "consent gate: a record whose `field` does not equal `equals` is "
         "not routed to the purpose; a key the purpose holds gets a "
         "tombstone (`consent-withdrawn`)"},
        {"purposes.*", "guard", "map", "-",
         "egress leak guard: every string the purpose receives is scanned "
         "with the detectors; a class its transforms do not keep is a leak "
         "(`guard: {}` turns it on with the defaults)"},
        {"purposes.*.guard", "on_leak", "redact, quarantine or halt", "redact",
         "redact: the span is replaced by `[DETECTOR]` and the record goes "
         "on; quarantine: the record goes to the DLQ (`leak-quarantined`); "
         "halt: the purpose's circuit breaker trips, its records are held "
         "in the DLQ (`purpose-halted`) until `veil guard resume`"},
        {"purposes.*.requires", "field", "field path", "-",
         "the source record's field, record names joined by `.` "
         "(`consents.marketing`); a null or missing value fails the gate"},
        {"purposes.*.requires", "equals", "bool, string or enum symbol", "-",
         "plain true/false tests a boolean; anything else is compared with "
         "a string or an enum symbol"},

        {"purposes.*.transforms.*.mask", "keep_last", "integer", "4",
         "characters kept at the end (4 when neither end is given)"},
        {"purposes.*.transforms.*.mask", "keep_first", "integer", "0",
         "characters kept at the start"},
        {"purposes.*.transforms.*.mask", "char", "character", "*",
         "the masking character (one printable ASCII character)"},
        {"purposes.*.transforms.*.mask", "digits_only", "bool", "false",
         "mask digits only, keeping separators"},

        {"purposes.*.transforms.*.generalize", "width", "integer", "10",
         "numbers: bucket width (dates become their year)"},
        {"purposes.*.transforms.*.generalize", "prefix", "integer", "1",
         "strings: characters kept"},

        {"purposes.*.transforms.*.encrypt", "mode", "siv or gcm", "siv",
         "siv: deterministic (joinable); gcm: randomised"},
        {"purposes.*.transforms.*.encrypt", "output", "string or bytes",
         "string", "token as text or raw bytes"},
        {"purposes.*.transforms.*.encrypt", "per_subject", "bool", "false",
         "crypto-shredding: encrypt under the subject's (the source record "
         "key's) own data key, destroyed by an erasure"},

        {"purposes.*.transforms.*.redact_text", "replace", "string",
         "[{detector}]",
         "what replaces each span found; `{detector}` is the detector's "
         "name, empty deletes the span. The result is scanned and redacted "
         "again until clean (`[phone]` is a context word for a number "
         "beside it); a text still holding a finding after 4 rewrites is "
         "delivered empty"},
        {"purposes.*.transforms.*.redact_text", "detectors", "list", "all",
         "only these detectors"},

        {"topics", "dlq", "topic", "veil.dlq", "dead letters"},
        {"topics", "audit", "topic", "veil.audit",
         "audit events (hash-chained)"},
        {"topics", "ledger", "topic", "veil.retention",
         "retention ledger: key to deadline, compacted"},
        {"topics", "erasure", "topic", "veil.erasure", "erasure requests"},
        {"topics", "subject_keys", "topic", "veil.subject-keys",
         "wrapped per-subject data keys (compacted; used with per_subject)"},
        {"topics", "control", "topic", "veil.control",
         "halted purposes (compacted; used when a purpose can be halted: "
         "`on_leak: halt` or `halt_on`)"},

        {"", "alerts", "map", "-",
         "sliding-minute thresholds: `veil_alert_active` on /metrics and "
         "`alert-raised` / `alert-cleared` log events"},
        {"", "halt_on", "list", "-",
         "alerts (set under `alerts:`) that trip the purpose's circuit "
         "breaker when raised (`dlq_per_minute`: every purpose)"},
        {"alerts", "leaks_per_minute", "integer >= 1", "-",
         "per purpose: leaks the guard found in the last minute"},
        {"alerts", "dlq_per_minute", "map", "-",
         "per `veil.error` code: dead letters in the last minute "
         "(`{ bad-magic: 100 }`)"},
        {"alerts", "unclassified_per_minute", "integer >= 1", "-",
         "per purpose: fields withheld as unclassified in the last minute"},
        {"alerts", "consent_drops_per_minute", "integer >= 1", "-",
         "per purpose: records its consent gate withheld in the last "
         "minute"},

        {"routes[]", "source", "topic", "-",
         "the source topic (one route per source)"},
        {"routes[]", "key_class", "class or tier", "-",
         "the class of the record key; the key gets that class's transform "
         "on every purpose"},
        {"routes[]", "purposes", "map", "-",
         "purpose name to its topic on this route (a topic has one writer)"},
        {"routes[]", "classify", "map", "-",
         "field path (`address.zip`, `contacts[].email`, `PATH{key}`) to "
         "class or tier; overrides schema annotations"},

        {"routes[]", "accept", "map", "-",
         "source validation: only these writer schemas may come from the "
         "source; any other record goes to the DLQ (`source-rejected`)"},
        {"routes[].accept", "records", "list", "-",
         "full names of the accepted record schemas "
         "(`com.example.crm.Customer`)"},

        {"registry", "url", "URL", "-",
         "http(s):// Confluent-compatible REST, or file://DIR (relative to "
         "the config file)"},
        {"registry", "basic_auth", "string", "-",
         "\"user:password\"; never printed"},
        {"registry", "ca_file", "path", "system store",
         "CA bundle (PEM) that signed the registry's certificate"},
        {"registry", "cert_file", "path", "-",
         "client certificate (PEM) for mutual TLS; with `key_file`, "
         "https:// only"},
        {"registry", "key_file", "path", "-",
         "the client certificate's private key (PEM, no passphrase); "
         "owner-only (0600) unless `keys.allow_insecure_permissions`"},
        {"registry", "bearer_token_file", "path", "-",
         "file holding a bearer token (`Authorization: Bearer`); "
         "owner-only (0600); never printed; not with `basic_auth`"},
        {"registry", "bearer_token_env", "string", "-",
         "name of an environment variable holding the bearer token "
         "(read at start, then removed from the environment)"},
        {"registry", "timeout", "duration", "5s", "per request"},
        {"registry", "retries", "integer", "3", "0 to 100"},
        {"registry", "allow_insecure", "bool", "false",
         "allow plain http:// to a host other than loopback"},

        {"keys", "hmac_key_file", "path", "-",
         "the key file (at least 32 bytes; a final newline is ignored); "
         "the environment variable VEIL_HMAC_KEY overrides it"},
        {"keys", "key_id", "string", "k1",
         "id carried in every token (1-32 of a-z A-Z 0-9 _ -)"},
        {"keys", "active", "string", "-",
         "id of the ring key that makes new tokens, DLQ seals and audit "
         "MACs"},
        {"keys", "ring", "map", "-",
         "every key that may still open old tokens and verify old audit: "
         "ID: { file: PATH } or ID: { command: \"...\" }"},
        {"keys", "allow_insecure_permissions", "bool", "false",
         "accept key files that group or others may read"},
        {"keys", "command_timeout", "duration", "10s",
         "how long a key command may run"},
        {"keys.ring.*", "file", "path", "-",
         "an owner-only (0600) key file, at least 32 bytes"},
        {"keys.ring.*", "command", "string", "-",
         "run through /bin/sh -c at start and on SIGHUP; its stdout is the "
         "key, its stderr is never read"},
        {"erasure", "allow_plaintext", "bool", "false",
         "accept erasure requests that carry the subject key in clear"},
        {"keys", "shared_across_purposes", "bool", "false",
         "derive one hash key for all purposes, so purposes can join on "
         "hashed values"},

        {"dlq", "payload", "encrypted or raw", "encrypted",
         "how the original key and value are kept in dead letters"},

        {"audit", "level", "record, batch or off", "record",
         "one audit event per record and purpose, one per batch and "
         "purpose, or none"},

        {"metrics", "listen", "HOST:PORT", "-",
         "serve GET /metrics and GET /healthz there; none when absent"},

        {"log", "level", "debug, info, warn or error", "info",
         "lowest level logged"},
};

struct walk {
        const char *section; /* the section being printed */
        bool header_done;
        bool *used; /* per note */
        int missing;
};

static const struct note *find_note(const char *section, const char *key,
                                    size_t *idx)
{
        size_t i;

        for (i = 0; i < VEIL_ARRAY_SIZE(notes); i++)
                if (!strcmp(notes[i].section, section) &&
                    !strcmp(notes[i].key, key)) {
                        *idx = i;
                        return &notes[i];
                }
        return NULL;
}

static void print_section_header(const char *section)
{
        if (!*section)
                printf("\n## Top level\n\n");
        else
                printf("\n## `%s`\n\n", section);
        printf("| key | type | required | default | description |\n"
               "|---|---|---|---|---|\n");
}

static void print_key(const char *section, const char *key, bool required,
                      void *arg)
{
        struct walk *w = arg;
        const struct note *n;
        size_t idx = 0;

        if (strcmp(section, w->section))
                return;
        if (!w->header_done) {
                print_section_header(section);
                w->header_done = true;
        }
        n = find_note(section, key, &idx);
        if (!n) {
                fprintf(stderr,
                        "veil config-reference: %s%s%s has no description "
                        "(add it to connectors/cmd_config_reference.c)\n",
                        section, *section ? "." : "", key);
                w->missing++;
                printf("| `%s` | ? | %s | ? | (undocumented) |\n", key,
                       required ? "yes" : "no");
                return;
        }
        w->used[idx] = true;
        printf("| `%s` | %s | %s | %s | %s |\n", key, n->type,
               required ? "yes" : "no", n->def, n->help);
}

/* Collects the distinct sections in table order. */
struct sections {
        const char *names[64];
        size_t n;
};

static void collect_section(const char *section, const char *key, bool required,
                            void *arg)
{
        struct sections *s = arg;
        size_t i;

        (void)key;
        (void)required;
        for (i = 0; i < s->n; i++)
                if (!strcmp(s->names[i], section))
                        return;
        if (s->n < VEIL_ARRAY_SIZE(s->names))
                s->names[s->n++] = section;
}

static const char *fconf_type(enum veil_filter_config_type t)
{
        switch (t) {
        case VEIL_FCONF_BOOL:
                return "bool";
        case VEIL_FCONF_INT:
                return "integer";
        case VEIL_FCONF_STR:
                return "string";
        default:
                return "?";
        }
}

static void print_filters(void)
{
        const struct veil_filter_plugin *const builtins[] = {
                &veil_filter_decode, &veil_filter_accept, &veil_filter_license,
                &veil_filter_consent, &veil_filter_guard};
        size_t i;

        printf("\n## Built-in filters\n\n"
               "Each filter declares its settings in its own table "
               "(`filters/*.c`); these are the\nvalues in force. A filter "
               "without settings is listed with none.\n");
        for (i = 0; i < VEIL_ARRAY_SIZE(builtins); i++) {
                const struct veil_filter_config *c = builtins[i]->config;

                printf("\n### `%s`\n\n%s.\n", builtins[i]->name,
                       builtins[i]->description);
                if (!c || c->type == VEIL_FCONF_END) {
                        printf("\nNo settings.\n");
                        continue;
                }
                printf("\n| key | type | required | default | description "
                       "|\n|---|---|---|---|---|\n");
                for (; c->type != VEIL_FCONF_END; c++)
                        printf("| `%s` | %s | %s | %s | %s |\n", c->key,
                               fconf_type(c->type),
                               c->flags & VEIL_FCONF_REQUIRED ? "yes" : "no",
                               c->def ? c->def : "-", c->help);
        }
}

int veil_cmd_config_reference(int argc, char **argv)
{
        bool used[VEIL_ARRAY_SIZE(notes)] = {false};
        struct sections secs              = {{0}, 0};
        struct walk w                     = {0};
        int stale                         = 0;
        size_t i;

        if (argc > 1) {
                if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
                        veil_cmd_print_help(&help_config_reference);
                        return VEIL_EXIT_OK;
                }
                return veil_cmd_usage_error(&help_config_reference,
                                            "unexpected argument '%s'",
                                            argv[1]);
        }

        printf("# Configuration reference\n\n"
               "<!-- Generated by `veil config-reference` from the "
               "loader's key tables\n     (common/config.c) and the "
               "built-in filters' tables (filters/*.c).\n     Do not edit: "
               "run `make config-reference`. A test fails when this\n     "
               "file differs from the command's output. -->\n\n"
               "One YAML file configures a pipeline (`veil run -c FILE`). "
               "Unknown keys are errors\n(with a suggestion), so a typo never "
               "passes silently. In section names, `*` is a\nname you "
               "choose (a class, a purpose, a transform's target) and `[]` "
               "an item of a list.\nDurations are written `90d`, `12h`, "
               "`30m`, `90s`, `500ms` or combined (`1h30m`).\nPaths are "
               "relative to the config file's folder. `config/veil.example."
               "yaml` shows\nevery key in use, commented.\n");

        veil_config_each_key(collect_section, &secs);
        w.used = used;
        for (i = 0; i < secs.n; i++) {
                w.section     = secs.names[i];
                w.header_done = false;
                veil_config_each_key(print_key, &w);
        }
        print_filters();

        for (i = 0; i < VEIL_ARRAY_SIZE(notes); i++)
                if (!used[i]) {
                        fprintf(stderr,
                                "veil config-reference: the description of "
                                "%s%s%s names a key no loader table has\n",
                                notes[i].section, *notes[i].section ? "." : "",
                                notes[i].key);
                        stale++;
                }
        return w.missing || stale ? 1 : VEIL_EXIT_OK;
}
