/* cli: the command line. Parses arguments per sub-command (getopt_long), prints help,
 * runs whoami / presign / plugins and the pipeline commands (apply, plan, destroy, rotate,
 * status), and maps results to exit codes: 0 success,
 * 1 an operation failed, 2 usage or configuration error (nothing was sent to AWS). */
#include "cli.h"

#include <getopt.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "aws/aws.h"
#include "aws/sts.h"
#include "config.h"
#include "error.h"
#include "identities.h"
#include "journal.h"
#include "loader.h"
#include "names.h"
#include "options.h"
#include "pipeline.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2

static const char *main_usage =
    "usage: opsline [--version] [--help] COMMAND [ARGS]\n"
    "\n"
    "Provision per-product AWS S3 buckets, IAM users, least-privilege policies and access\n"
    "keys, and store the keys safely, for one product or hundreds at once.\n"
    "\n"
    "commands:\n"
    "  apply PRODUCT...        create or converge buckets, users, policies and keys\n"
    "  plan PRODUCT...         show what apply would change (reads only)\n"
    "  rotate PRODUCT...       replace the access keys, store and prove the new ones\n"
    "  destroy PRODUCT...      remove what opsline created (keys, policy, user, bucket)\n"
    "  status PRODUCT...       show what exists: keys, their age and use, stores, drift\n"
    "  whoami                  show the AWS identity opsline acts as\n"
    "  presign s3://BUCKET/KEY print a presigned (time-limited) URL for an object\n"
    "  plugins list            list the stages that can be used in a pipeline\n"
    "  plugins show NAME       show a stage's options, defaults and needs\n"
    "\n"
    "Run `opsline COMMAND --help` for a command's options.\n"
    "Credentials, region and endpoints are resolved like the AWS CLI: AWS_ACCESS_KEY_ID /\n"
    "AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE with ~/.aws/credentials and\n"
    "~/.aws/config (role_arn, SSO, web identity, credential_process), container and\n"
    "instance credentials, AWS_REGION (default eu-north-1),\n"
    "AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>. Retries: AWS_MAX_ATTEMPTS,\n"
    "AWS_RETRY_MODE=standard|adaptive.\n"
    "\n"
    "exit codes: 0 success, 1 an operation failed, 2 usage or configuration error,\n"
    "3 (plan) changes pending\n";

static const char *whoami_usage =
    "usage: opsline whoami [--profile NAME|ENV=NAME,...] [--region REGION|ENV=REGION,...]\n"
    "                      [-e ENV[,ENV...]] [--pipeline FILE] [--json]\n"
    "\n"
    "Calls STS GetCallerIdentity and prints the account, ARN and user id of the resolved\n"
    "credentials, and where they came from (never the secret). With a per-environment\n"
    "mapping (--profile production=prod-admin,staging=staging-admin), -e or a pipeline file\n"
    "(its \"profiles\" and \"regions\"), given as to apply: every identity that run would\n"
    "use, one per environment.\n";

static const char *presign_usage =
    "usage: opsline presign s3://BUCKET/KEY [--expires DURATION] [--method GET|PUT]\n"
    "                       [--profile NAME] [--region REGION]\n"
    "\n"
    "Prints a presigned URL (SigV4 query authentication) for one object: anyone holding\n"
    "the URL may GET (download) or PUT (upload) that object until it expires.\n"
    "  --expires DURATION  1s to 7d; a number with s, m, h or d (default 15m)\n"
    "  --method METHOD     GET (default) or PUT\n"
    "Note: a URL signed with temporary credentials stops working when they expire.\n";

static const char *apply_usage =
    "usage: opsline apply PRODUCT... [-e ENV[,ENV...]] [--region REGION] [--profile NAME]\n"
    "                     [--pipeline FILE] [--secrets STORE[,STORE...]]\n"
    "                     [--env-file TEMPLATE] [--state-dir DIR]\n"
    "                     [--products-file FILE] [--set STAGE.OPTION=VALUE]...\n"
    "                     [--plugin-dir DIR]... [--concurrency N] [--verify] [--json] [-q]\n"
    "                     [-v]\n"
    "\n"
    "For every product and environment, creates (or converges) the bucket and IAM user\n"
    "<product>-<environment>, the user's inline least-privilege policy, an access key,\n"
    "and stores the key. Safe to rerun: what exists is checked and reported unchanged.\n"
    "  --verify                 then prove the stored key works (verify stage)\n";

static const char *plan_usage =
    "usage: opsline plan PRODUCT... [options as for apply]\n"
    "\n"
    "Reads only (never a write request) and prints, per item and stage, what `apply` would\n"
    "do: create, update (with the difference) or nothing; stores take part (a store that\n"
    "lacks the item's secret shows as a change).\n"
    "exit codes: 0 no changes, 3 changes pending, 1 a read failed, 2 usage error\n";

static const char *destroy_usage =
    "usage: opsline destroy PRODUCT... [--yes] [--empty-bucket] [--adopt]\n"
    "                       [options as for apply]\n"
    "\n"
    "Removes what opsline created for each item: the access keys, the inline policy, the\n"
    "user, the bucket, and the item's entries in every configured store. Idempotent: what\n"
    "is already gone is reported absent.\n"
    "  --yes                    do not ask for confirmation (needed without a terminal)\n"
    "  --empty-bucket           delete every object version of a non-empty bucket first\n"
    "  --adopt                  also remove resources opsline did not create (no\n"
    "                           managed-by=opsline tag and no journal record)\n";

static const char *rotate_usage =
    "usage: opsline rotate PRODUCT... [--keep-old] [options as for apply]\n"
    "\n"
    "Replaces each item's access key: creates the new key, stores it in every configured\n"
    "store, proves it works, deactivates the old key and deletes it. Safe to rerun after\n"
    "a crash: the user ends with exactly one active key, the stored one.\n"
    "  --keep-old               leave the old key inactive (a grace period); the next\n"
    "                           rotate deletes it\n";

static const char *status_usage =
    "usage: opsline status [PRODUCT...] [options as for apply]\n"
    "\n"
    "Shows what exists per item, from the ownership tags and the journal: the bucket, the\n"
    "user, its keys with age and last use, which stores hold the secret, and drift.\n"
    "Reads only. Without a product: every product the journal says opsline created.\n";

static const char *pipeline_usage =
    "options:\n"
    "  -e, --environments LIST  comma-separated (default production,staging)\n"
    "  --region REGION          default: AWS_REGION, the profile, else eu-north-1\n"
    "  --profile NAME           AWS profile (keys, role_arn, SSO, web identity, process);\n"
    "                           ENV=NAME,... gives each environment its own profile, e.g.\n"
    "                           production=prod-admin,staging=staging-admin (and\n"
    "                           --region ENV=REGION,... its own region)\n"
    "  --pipeline FILE          JSON pipeline (default stages: bucket, iam, policy, dotenv)\n"
    "  --secrets LIST           secret stores that receive every key (default dotenv):\n"
    "                           dotenv, keepassxc, pass, bitwarden, 1password,\n"
    "                           aws-secretsmanager, or a plugin's store; several at once\n"
    "  --env-file TEMPLATE      where dotenv writes keys, e.g. '{product}/.env.{environment}'\n"
    "                           (default '{bucket}.env'); files are mode 0600\n"
    "  --state-dir DIR          journal of what was created (default .opsline)\n"
    "  --products-file FILE     more products, one per line: a name, or a JSON object with\n"
    "                           the product's own environments, region, tags, versioning,\n"
    "                           policy, secret stores and stage options\n"
    "                           (docs/products-file.md)\n"
    "  --set STAGE.OPTION=VAL   set a stage option, e.g. --set bucket.versioning=true\n"
    "  --plugin-dir DIR         also load stage plugins from DIR (repeatable)\n"
    "  --concurrency N          items in flight at once (default 32)\n"
    "  --json                   print one JSON report on stdout (never secrets)\n"
    "  -q, --quiet              print only failures and the summary; no progress line\n"
    "  -v, --verbose            debug output on stderr (never secrets)\n"
    "On a terminal a status line on stderr shows progress (done/total, failed, in flight,\n"
    "requests/s, throttled, ETA); otherwise a progress line is printed every 10 s\n"
    "(OPSLINE_PROGRESS_INTERVAL=SECONDS, 0: none). NO_COLOR turns colour off.\n";

static const char *plugins_usage =
    "usage: opsline plugins list [--plugin-dir DIR]...\n"
    "       opsline plugins show NAME [--plugin-dir DIR]...\n"
    "\n"
    "Plugins are loaded from --plugin-dir, OPSLINE_PLUGIN_PATH (colon-separated), and\n"
    "opsline's own plugin directory.\n";

static int usage_error(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "opsline%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nRun `opsline%s%s --help` for usage.\n", cmd ? " " : "", cmd ? cmd : "");
    return EXIT_USAGE;
}

/* "15m", "3600", "2h", "7d", "30s" -> seconds; 0 on error. */
unsigned long cli_parse_duration(const char *s) {
    char *end = NULL;
    if (s == NULL || *s < '0' || *s > '9')
        return 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long mult = 1;
    if (*end == 's')
        end++;
    else if (*end == 'm')
        mult = 60, end++;
    else if (*end == 'h')
        mult = 3600, end++;
    else if (*end == 'd')
        mult = 86400, end++;
    if (*end != '\0' || v > 1000000000ULL)
        return 0;
    return (unsigned long)(v * mult);
}

/* ---- whoami ----------------------------------------------------------------------------- */

static void loop_finish(uv_loop_t *loop, aws_client *c) {
    if (c)
        aws_client_close(c, NULL, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    pipeline_loop_close(loop);
}

static int client_open(uv_loop_t *loop, const char *profile, const char *region, aws_client **c,
                       int need_creds) {
    char *err = NULL;
    const char *cmsg = NULL;
    uv_loop_init(loop);
    int rc = aws_client_new(loop, profile, region, c, &err);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err ? err : ol_strerror(rc));
        free(err);
        return EXIT_USAGE;
    }
    if (need_creds && aws_client_creds_error(*c, &cmsg) != 0) {
        fprintf(stderr, "error: %s\n", cmsg ? cmsg : "no AWS credentials found");
        return EXIT_USAGE;
    }
    return 0;
}

typedef struct whoami_args {
    const char *profile;
    const char *region;
    const char *environments; /* -e */
    const char *pipeline;     /* --pipeline */
    int json;
} whoami_args;

/* What GetCallerIdentity said: the identity, or the failure's message and hint. */
typedef struct whoami_answer {
    const char *source; /* of the credentials, for messages */
    int result;
    int parsed; /* sts_identity_parse's code */
    sts_identity id;
    char *failure;    /* sts_failure_message, when result != 0 */
    const char *hint; /* sts_failure_hint, when result != 0 */
} whoami_answer;

static void on_whoami(void *arg, const ol_aws_response *res) {
    whoami_answer *w = arg;
    w->result = res->result;
    if (res->result == 0) {
        w->parsed = sts_identity_parse(res->body, res->body_len, &w->id);
        return;
    }
    w->failure = sts_failure_message(res, w->source);
    w->hint = sts_failure_hint(res);
}

/* Parses whoami's options into *a. Returns -1 to go on, else the exit code. */
static int whoami_parse(int argc, char **argv, whoami_args *a) {
    static const struct option longopts[] = {{"profile", required_argument, NULL, 'p'},
                                             {"region", required_argument, NULL, 'r'},
                                             {"environments", required_argument, NULL, 'e'},
                                             {"pipeline", required_argument, NULL, 'P'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "he:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            a->profile = optarg;
            break;
        case 'e':
            a->environments = optarg;
            break;
        case 'P':
            a->pipeline = optarg;
            break;
        case 'r':
            a->region = optarg;
            break;
        case 'j':
            a->json = 1;
            break;
        case 'h':
            fputs(whoami_usage, stdout);
            return 0;
        default:
            return usage_error("whoami", "%s", "unknown option");
        }
    }
    if (optind < argc)
        return usage_error("whoami", "unexpected argument '%s'", argv[optind]);
    return -1;
}

/* env: the environment of a per-environment whoami, else NULL. json_list: the JSON array
 * such a whoami prints, else NULL (one object is printed). */
static void whoami_print(const whoami_answer *w, const char *region, int json, const char *env,
                         json_t *json_list) {
    const sts_identity *id = &w->id;
    if (!json) {
        if (env != NULL)
            printf("Environment: %s\n", env);
        printf("Account: %s\nArn:     %s\nUserId:  %s\nSource:  %s\nRegion:  %s\n",
               id->account ? id->account : "?", id->arn ? id->arn : "?",
               id->user_id ? id->user_id : "?", w->source ? w->source : "?", region);
        return;
    }
    json_t *j =
        json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?}", "UserId", id->user_id, "Account", id->account,
                  "Arn", id->arn, "CredentialSource", w->source, "Region", region);
    if (j != NULL && env != NULL)
        json_object_set_new(j, "Environment", json_string(env));
    if (json_list != NULL) {
        json_array_append_new(json_list, j);
        return;
    }
    json_dumpf(j, stdout, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(j);
}

/* Sends GetCallerIdentity on c and reports the answer. Returns the exit code. */
static int whoami_ask(uv_loop_t *loop, aws_client *c, int json, const char *env,
                      json_t *json_list) {
    whoami_answer w = {.source = aws_client_source(c)};
    int rc = sts_get_caller_identity(c, on_whoami, &w);
    if (rc != 0) /* the callback will not run: report the refusal as its answer */
        on_whoami(&w, &(ol_aws_response){.struct_size = sizeof(ol_aws_response), .result = rc});
    else
        uv_run(loop, UV_RUN_DEFAULT);
    int code = 0;
    if (w.result != 0) {
        fprintf(stderr, "error: %s\n", w.failure ? w.failure : ol_strerror(w.result));
        if (w.hint != NULL)
            fprintf(stderr, "%s\n", w.hint);
        /* OL_ECONFIG: the credentials could not be had for want of configuration. */
        code = w.result == OL_ECONFIG ? EXIT_USAGE : EXIT_FAILED;
    } else {
        whoami_print(&w, aws_client_settings(c)->region, json, env, json_list);
        if (w.parsed != 0) {
            fprintf(stderr, "error: unexpected GetCallerIdentity answer\n");
            code = EXIT_FAILED;
        }
    }
    free(w.failure);
    sts_identity_free(&w.id);
    return code;
}

/* whoami for each environment of a per-environment mapping. Returns the exit code. */
static int whoami_each(const whoami_args *a) {
    plan p;
    char *err = NULL;
    int code = 0;
    int rc = identities_plan_whoami(a->profile, a->region, a->environments, a->pipeline, &p, &err);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err ? err : ol_strerror(rc));
        free(err);
        plan_free(&p);
        return EXIT_USAGE;
    }
    json_t *list = a->json ? json_array() : NULL;
    for (size_t e = 0; e < p.n_environments && code != EXIT_USAGE; e++) {
        const char *profile, *region;
        uv_loop_t loop;
        aws_client *c = NULL;
        identities_of_item(&p, 0, p.environments[e], &profile, &region);
        int one = client_open(&loop, profile, region, &c, 1);
        if (one == 0) {
            if (!a->json && e > 0)
                putchar('\n');
            one = whoami_ask(&loop, c, a->json, p.environments[e], list);
        }
        loop_finish(&loop, c);
        if (one != 0 && code != EXIT_USAGE)
            code = one;
    }
    if (list != NULL) {
        json_dumpf(list, stdout, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(list);
    }
    plan_free(&p);
    return code;
}

static int cmd_whoami(int argc, char **argv) {
    whoami_args a = {0};
    int code = whoami_parse(argc, argv, &a);
    if (code >= 0)
        return code;
    if (identities_is_mapping(a.profile) || identities_is_mapping(a.region) ||
        a.environments != NULL || a.pipeline != NULL)
        return whoami_each(&a);
    uv_loop_t loop;
    aws_client *c = NULL;
    code = client_open(&loop, a.profile, a.region, &c, 1);
    if (code == 0)
        code = whoami_ask(&loop, c, a.json, NULL, NULL);
    loop_finish(&loop, c);
    return code;
}

#define PRESIGN_KEY_MAX 1024 /* S3: "The name for a key ... up to 1,024 bytes long" */

typedef struct presign_args {
    const char *profile, *region, *method, *expires_s;
    char bucket[256];
    const char *key;
    unsigned long expires;
} presign_args;

/* presign's options into *x. Returns -1 to go on, else the exit code. */
static int presign_options(int argc, char **argv, presign_args *x) {
    static const struct option longopts[] = {
        {"expires", required_argument, NULL, 'e'}, {"method", required_argument, NULL, 'm'},
        {"profile", required_argument, NULL, 'p'}, {"region", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'e':
            x->expires_s = optarg;
            break;
        case 'm':
            x->method = optarg;
            break;
        case 'p':
            x->profile = optarg;
            break;
        case 'r':
            x->region = optarg;
            break;
        case 'h':
            fputs(presign_usage, stdout);
            return 0;
        default:
            return usage_error("presign", "%s", "unknown option");
        }
    }
    return -1;
}

/* The s3://BUCKET/KEY operand, the method and the expiry, checked. Returns -1 to go on,
 * else the exit code. */
static int presign_check(int argc, char **argv, presign_args *x) {
    if (optind + 1 != argc)
        return usage_error("presign", "%s", "give exactly one s3://BUCKET/KEY");
    const char *target = argv[optind];
    if (strncmp(target, "s3://", 5) != 0)
        return usage_error("presign", "'%s' is not an s3://BUCKET/KEY address", target);
    const char *slash = strchr(target + 5, '/');
    if (slash == NULL || slash == target + 5 || slash[1] == '\0')
        return usage_error("presign", "'%s' needs both a bucket and a key: s3://BUCKET/KEY",
                           target);
    if (strcmp(x->method, "GET") != 0 && strcmp(x->method, "PUT") != 0)
        return usage_error("presign", "--method '%s': use GET or PUT", x->method);
    x->expires = cli_parse_duration(x->expires_s);
    if (x->expires == 0 || x->expires > 604800)
        return usage_error("presign",
                           "--expires '%s': give 1s to 7d (a number with s, m, h or d; SigV4 "
                           "presigned URLs last at most 7 days)",
                           x->expires_s);
    /* The bucket and key are checked as apply checks its names: a presigned URL for a name
     * S3 cannot have is a URL that can only ever fail. */
    char *bucket = strndup(target + 5, (size_t)(slash - target - 5)), *why = NULL;
    if (bucket == NULL)
        return EXIT_FAILED;
    int bad = names_check_bucket(bucket, &why);
    if (bad == 0)
        snprintf(x->bucket, sizeof(x->bucket), "%s", bucket); /* at most 63 characters */
    free(bucket);
    if (bad != 0) {
        int code = usage_error("presign", "%s", why != NULL ? why : ol_strerror(bad));
        free(why);
        return code;
    }
    x->key = slash + 1;
    if (strlen(x->key) > PRESIGN_KEY_MAX)
        return usage_error("presign",
                           "the key is longer than 1024 bytes, the most an S3 object key can "
                           "have: check the address (%.60s...)",
                           x->key);
    return -1;
}

static int cmd_presign(int argc, char **argv) {
    presign_args x = {.method = "GET", .expires_s = "15m"};
    int code = presign_options(argc, argv, &x);
    if (code < 0)
        code = presign_check(argc, argv, &x);
    if (code >= 0)
        return code;
    uv_loop_t loop;
    aws_client *c = NULL;
    code = client_open(&loop, x.profile, x.region, &c, 1);
    if (code == 0) {
        char *url = NULL, *err = NULL;
        int rc;
        /* Temporary credentials (a role, SSO) are fetched first: run the loop until then. */
        while ((rc = aws_presign_s3(c, x.method, x.bucket, x.key, x.expires, &url, &err)) > 0)
            uv_run(&loop, UV_RUN_ONCE);
        if (rc != 0) {
            fprintf(stderr, "error: %s\n", err ? err : ol_strerror(rc));
            code = EXIT_USAGE;
        } else {
            printf("%s\n", url);
        }
        free(url);
        free(err);
    }
    loop_finish(&loop, c);
    return code;
}

/* ---- plugins ---------------------------------------------------------------------------- */

static int load_plugins(loader **l, const char *const *dirs, size_t n) {
    char *err = NULL;
    if (loader_new(l) != 0)
        return EXIT_USAGE;
    int rc = loader_load_default(*l, dirs, n, &err);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err ? err : ol_strerror(rc));
        free(err);
        return EXIT_USAGE;
    }
    return 0;
}

static int cmd_plugins(int argc, char **argv) {
    static const struct option longopts[] = {{"plugin-dir", required_argument, NULL, 'd'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *dirs[32];
    size_t n_dirs = 0;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (ch == 'd' && n_dirs < 32)
            dirs[n_dirs++] = optarg;
        else if (ch == 'h') {
            fputs(plugins_usage, stdout);
            return 0;
        } else
            return usage_error("plugins", "%s", "unknown option");
    }
    if (optind >= argc)
        return usage_error("plugins", "%s", "say `list` or `show NAME`");
    const char *sub = argv[optind];
    loader *l = NULL;
    int code = load_plugins(&l, dirs, n_dirs);
    if (code != 0) {
        loader_free(l);
        return code;
    }
    if (strcmp(sub, "list") == 0 && optind + 1 == argc) {
        for (size_t i = 0; i < loader_count(l); i++) {
            const loader_plugin *p = loader_at(l, i);
            printf("%-18s %-8s %s%s\n                   %s\n", p->desc->name,
                   p->desc->version ? p->desc->version : "",
                   (p->desc->flags & OL_STAGE_DEFAULT) ? "[default] " : "",
                   p->desc->description ? p->desc->description : "", p->path);
        }
        if (loader_count(l) == 0)
            fprintf(stderr, "no plugins found; add a directory with --plugin-dir\n");
    } else if (strcmp(sub, "show") == 0 && optind + 2 == argc) {
        const loader_plugin *p = loader_find(l, argv[optind + 1]);
        if (p == NULL) {
            fprintf(stderr, "error: no stage named '%s'; `opsline plugins list` shows them\n",
                    argv[optind + 1]);
            code = EXIT_USAGE;
        } else {
            options_describe(p->desc, p->path, stdout);
            const ol_cli_flag *f = loader_cli_flags(p->desc);
            for (size_t i = 0; f != NULL && f[i].flag != NULL; i++)
                if (f[i].option != NULL)
                    printf("command-line flag: --%s sets option %s\n", f[i].flag, f[i].option);
                else
                    printf("command-line flag: --%s adds this stage to the pipeline\n", f[i].flag);
        }
    } else {
        code = usage_error("plugins", "%s", "say `list` or `show NAME`");
    }
    loader_free(l);
    return code;
}

/* ---- apply, plan, destroy, rotate, status ------------------------------------------------ */

#define APPLY_MAX_SETS 64
#define APPLY_MAX_DIRS 32

/* The commands that run the pipeline: apply, plan, destroy, rotate, status. */
typedef struct pipeline_command {
    const char *name;
    int mode; /* ol_mode */
    const char *usage;
    const char *flags; /* the getopt letters of its own switches */
} pipeline_command;

static const pipeline_command pipeline_commands[] = {
    {"apply", OL_MODE_APPLY, NULL, "V"},       {"plan", OL_MODE_PLAN, NULL, ""},
    {"destroy", OL_MODE_DESTROY, NULL, "yAX"}, {"rotate", OL_MODE_ROTATE, NULL, "kV"},
    {"status", OL_MODE_STATUS, NULL, ""},
};

static const char *command_usage(int mode) {
    const char *const usages[] = {apply_usage, plan_usage, destroy_usage, rotate_usage,
                                  status_usage};
    return usages[mode];
}

/* A pipeline command's arguments: config_args plus the storage its lists point into. */
typedef struct apply_args {
    config_args a;
    const pipeline_command *cmd;
    const char *sets[APPLY_MAX_SETS];
    const char *dirs[APPLY_MAX_DIRS];
    size_t n_dirs;
    unsigned flags; /* PLAN_FLAG_* */
    int yes;
} apply_args;

/* The options that take a string and only store it: getopt's letter -> config_args field. */
static const struct {
    int ch;
    size_t offset;
} apply_strings[] = {
    {'e', offsetof(config_args, environments)}, {'r', offsetof(config_args, region)},
    {'p', offsetof(config_args, profile)},      {'P', offsetof(config_args, pipeline_file)},
    {'E', offsetof(config_args, env_file)},     {'K', offsetof(config_args, secrets)},
    {'S', offsetof(config_args, state_dir)},    {'F', offsetof(config_args, products_file)},
};

static const char **apply_string_option(config_args *a, int ch) {
    for (size_t i = 0; i < sizeof(apply_strings) / sizeof(apply_strings[0]); i++)
        if (apply_strings[i].ch == ch)
            return (const char **)(void *)((char *)a + apply_strings[i].offset);
    return NULL;
}

/* A command's own switch (--yes, --adopt, ...). Returns -1 to go on, else the exit code. */
static int command_switch(apply_args *x, int ch, const char *opt) {
    if (strchr(x->cmd->flags, ch) == NULL) {
        char what[96];
        snprintf(what, sizeof(what), "%s is not an option of `opsline %s`", opt, x->cmd->name);
        return usage_error(x->cmd->name, "%s", what);
    }
    if (ch == 'y')
        x->yes = 1;
    else if (ch == 'A')
        x->flags |= PLAN_FLAG_ADOPT;
    else if (ch == 'X')
        x->flags |= PLAN_FLAG_EMPTY_BUCKET;
    else if (ch == 'k')
        x->flags |= PLAN_FLAG_KEEP_OLD;
    else
        x->a.verify = 1;
    return -1;
}

/* One option (getopt's ch, optarg). Returns -1 to go on, else the exit code. */
static int apply_option(apply_args *x, int ch) {
    const char **str = apply_string_option(&x->a, ch);
    const char *cmd = x->cmd->name;
    char *end = NULL;
    if (str != NULL) {
        *str = optarg;
        return -1;
    }
    switch (ch) {
    case 's':
        if (x->a.n_sets == APPLY_MAX_SETS)
            return usage_error(cmd, "%s", "too many --set options (64 at most)");
        x->sets[x->a.n_sets++] = optarg;
        return -1;
    case 'd':
        if (x->n_dirs == APPLY_MAX_DIRS)
            return usage_error(cmd, "%s", "too many --plugin-dir options");
        x->dirs[x->n_dirs++] = optarg;
        return -1;
    case 'c':
        x->a.concurrency = strtol(optarg, &end, 10);
        if (*end != '\0' || x->a.concurrency < 1 || x->a.concurrency > 1024)
            return usage_error(cmd, "--concurrency '%s': give a number from 1 to 1024", optarg);
        return -1;
    case 'j':
        x->a.json = 1;
        return -1;
    case 'v':
        x->a.verbose = 1;
        return -1;
    case 'q':
        x->a.quiet = 1;
        return -1;
    case 'y':
        return command_switch(x, ch, "--yes");
    case 'A':
        return command_switch(x, ch, "--adopt");
    case 'X':
        return command_switch(x, ch, "--empty-bucket");
    case 'k':
        return command_switch(x, ch, "--keep-old");
    case 'V':
        return command_switch(x, ch, "--verify");
    case 'h':
        fputs(command_usage(x->cmd->mode), stdout);
        fputs(pipeline_usage, stdout);
        return 0;
    default:
        return usage_error(cmd, "%s", "unknown option");
    }
}

/* Parses the command line into *x. Returns -1 to go on, else the exit code. */
static int apply_parse(int argc, char **argv, apply_args *x) {
    static const struct option longopts[] = {{"environments", required_argument, NULL, 'e'},
                                             {"region", required_argument, NULL, 'r'},
                                             {"profile", required_argument, NULL, 'p'},
                                             {"pipeline", required_argument, NULL, 'P'},
                                             {"env-file", required_argument, NULL, 'E'},
                                             {"secrets", required_argument, NULL, 'K'},
                                             {"state-dir", required_argument, NULL, 'S'},
                                             {"products-file", required_argument, NULL, 'F'},
                                             {"set", required_argument, NULL, 's'},
                                             {"plugin-dir", required_argument, NULL, 'd'},
                                             {"concurrency", required_argument, NULL, 'c'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"verbose", no_argument, NULL, 'v'},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {"yes", no_argument, NULL, 'y'},
                                             {"adopt", no_argument, NULL, 'A'},
                                             {"empty-bucket", no_argument, NULL, 'X'},
                                             {"keep-old", no_argument, NULL, 'k'},
                                             {"verify", no_argument, NULL, 'V'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int ch, code;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "e:vqh", longopts, NULL)) != -1)
        if ((code = apply_option(x, ch)) >= 0)
            return code;
    x->a.products = (const char *const *)&argv[optind];
    x->a.n_products = (size_t)(argc - optind);
    x->a.sets = x->sets;
    return -1;
}

/* destroy on a terminal: list the items and wait for "yes". Without a terminal, --yes is
 * required: a script never deletes by accident. Returns -1 to go on, else the exit code. */
static int destroy_confirm(const apply_args *x, const plan *p) {
    if (x->yes || p->mode != OL_MODE_DESTROY)
        return -1;
    if (!isatty(STDIN_FILENO))
        return usage_error("destroy", "%s",
                           "standard input is not a terminal: confirm with --yes to destroy");
    fprintf(stderr, "opsline will destroy the bucket, user, access keys, policy and stored "
                    "secrets of:\n");
    size_t n = p->n_products * p->n_environments;
    for (size_t k = 0; k < n && k < 20; k++)
        fprintf(stderr, "  %s-%s\n", p->products[k / p->n_environments],
                p->environments[k % p->n_environments]);
    if (n > 20)
        fprintf(stderr, "  ... and %zu more\n", n - 20);
    fprintf(stderr, "Type 'yes' to destroy: ");
    fflush(stderr);
    char answer[16] = "";
    if (fgets(answer, sizeof(answer), stdin) == NULL || strcmp(answer, "yes\n") != 0) {
        fprintf(stderr, "Not confirmed: nothing was destroyed.\n");
        return EXIT_FAILED;
    }
    return -1;
}

/* status with no product: the products of the items the journal says opsline created (and
 * did not destroy since), for the environments asked for. Returns -1 to go on, else the
 * exit code. *found is malloc'd (strings too); the caller frees it. */
static int status_products(apply_args *x, char ***found, size_t *n_found, plan *only) {
    const char *dir = x->a.state_dir ? x->a.state_dir : ".opsline";
    char path[4096];
    snprintf(path, sizeof(path), "%s/journal.jsonl", dir);
    if (access(path, F_OK) != 0)
        return usage_error("status",
                           "no product given and no journal in '%s': name the products "
                           "(e.g. `opsline status acme`) or give --state-dir",
                           dir);
    journal *j = NULL;
    char *err = NULL;
    if (journal_open(dir, &j, &err) != 0) {
        fprintf(stderr, "error: %s\n", err ? err : "cannot open the journal");
        free(err);
        return EXIT_USAGE;
    }
    const char **items = NULL;
    size_t n = journal_items(j, &items);
    only->only = calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; only->only != NULL && i < n; i++)
        if ((only->only[only->n_only] = strdup(items[i])) != NULL)
            only->n_only++;
    const char *envs = x->a.environments ? x->a.environments : CONFIG_DEFAULT_ENVIRONMENTS;
    *found = calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; *found != NULL && i < n; i++)
        for (const char *e = envs; *e != '\0';) {
            size_t el = strcspn(e, ","), il = strlen(items[i]);
            if (il > el + 1 && items[i][il - el - 1] == '-' &&
                strncmp(items[i] + il - el, e, el) == 0) {
                size_t k = 0;
                while (k < *n_found && (strlen((*found)[k]) != il - el - 1 ||
                                        strncmp((*found)[k], items[i], il - el - 1) != 0))
                    k++;
                if (k == *n_found && ((*found)[k] = strndup(items[i], il - el - 1)) != NULL)
                    (*n_found)++;
            }
            e += el + (e[el] == ',');
        }
    free(items);
    journal_close(j);
    if (*n_found == 0)
        return usage_error("status",
                           "no product given and the journal in '%s' records none for "
                           "these environments: name the products",
                           dir);
    x->a.products = (const char *const *)*found;
    x->a.n_products = *n_found;
    return -1;
}

static int cmd_pipeline(const pipeline_command *cmd, int argc, char **argv) {
    apply_args x;
    memset(&x, 0, sizeof(x));
    x.cmd = cmd;
    char **found = NULL;
    size_t n_found = 0;
    plan only = {0}; /* status from the journal: its items */
    int code = apply_parse(argc, argv, &x);
    if (code < 0 && cmd->mode == OL_MODE_STATUS && x.a.n_products == 0 && !x.a.products_file)
        code = status_products(&x, &found, &n_found, &only);
    loader *l = NULL;
    if (code < 0 && load_plugins(&l, x.dirs, x.n_dirs) != 0)
        code = EXIT_USAGE;
    if (code >= 0) {
        loader_free(l);
        for (size_t i = 0; i < n_found; i++)
            free(found[i]);
        free(found);
        plan_free(&only);
        return code;
    }
    plan p;
    char *err = NULL;
    int rc = config_build(&x.a, l, &p, &err);
    for (size_t i = 0; i < n_found; i++)
        free(found[i]);
    free(found);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err ? err : ol_strerror(rc));
        free(err);
        loader_free(l);
        plan_free(&only);
        return EXIT_USAGE;
    }
    p.only = only.only;
    p.n_only = only.n_only;
    p.mode = cmd->mode;
    p.flags = x.flags;
    code = destroy_confirm(&x, &p);
    if (code < 0)
        code = pipeline_run(&p);
    plan_free(&p);
    loader_free(l);
    return code;
}

int cli_main(int argc, char **argv) {
    if (argc < 2) {
        fputs(main_usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("opsline %s (plugin ABI %d.%d)\n", OPSLINE_VERSION, OL_ABI_MAJOR, OL_ABI_MINOR);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(main_usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "whoami") == 0)
        return cmd_whoami(argc - 1, argv + 1);
    if (strcmp(cmd, "presign") == 0)
        return cmd_presign(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof(pipeline_commands) / sizeof(pipeline_commands[0]); i++)
        if (strcmp(cmd, pipeline_commands[i].name) == 0)
            return cmd_pipeline(&pipeline_commands[i], argc - 1, argv + 1);
    if (strcmp(cmd, "plugins") == 0)
        return cmd_plugins(argc - 1, argv + 1);
    return usage_error(NULL, "unknown command '%s'", cmd);
}
